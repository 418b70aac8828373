/// One address to load and what a good answer from it looks like.
public struct LoadTarget: Sendable, Hashable {
    /// The name the report uses for this target, such as the pool name; unique
    /// within a configuration.
    public var label: String
    /// IPv4 address to connect to (`localhost` means 127.0.0.1).
    public var host: String
    /// TCP port.
    public var port: Int
    /// The `Host` header, such as `hello.demo-free.localhost`; nil sends `HOST:PORT`.
    public var hostHeader: String?
    /// Request path with any query, starting with `/`.
    public var path: String
    /// Request method.
    public var method: String
    /// Extra request headers (not Host, Content-Length, Transfer-Encoding or
    /// Connection, which the client sets itself).
    public var headers: [String: String]
    /// Request body, sent with a Content-Length; nil sends none.
    public var body: String?
    /// A 2xx response counts as ok only if its body contains this; otherwise it is
    /// a `mismatch`.
    public var expectedBodySubstring: String?
    /// A 2xx response counts as ok only if its `x-bulkhead-pool` header is exactly
    /// this; otherwise it is a `mismatch`.
    public var expectedPool: String?

    /// Creates a target; only the label and port have no default.
    public init(
        label: String,
        host: String = "127.0.0.1",
        port: Int,
        hostHeader: String? = nil,
        path: String = "/",
        method: String = "GET",
        headers: [String: String] = [:],
        body: String? = nil,
        expectedBodySubstring: String? = nil,
        expectedPool: String? = nil
    ) {
        self.label = label
        self.host = host
        self.port = port
        self.hostHeader = hostHeader
        self.path = path
        self.method = method
        self.headers = headers
        self.body = body
        self.expectedBodySubstring = expectedBodySubstring
        self.expectedPool = expectedPool
    }

    /// The `Host` header value actually sent.
    public var effectiveHostHeader: String {
        hostHeader ?? "\(host):\(port)"
    }
}
