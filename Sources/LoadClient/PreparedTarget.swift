#if canImport(Glibc)
import Glibc
#endif

/// A checked target in the form its connections use: the socket address, the
/// request bytes built once, and the expectations as bytes.
struct PreparedTarget: Sendable {
    /// The target as configured.
    let target: LoadTarget
    /// Where to connect.
    let address: sockaddr_in
    /// The whole request, sent unchanged on every attempt.
    let request: [UInt8]
    /// Whether the method is HEAD, whose responses have no body.
    let isHead: Bool
    /// `expectedBodySubstring` as UTF-8.
    let expectedBody: [UInt8]?

    /// Header names the client writes itself.
    private static let reservedHeaders: Set<String> = ["host", "content-length", "transfer-encoding", "connection"]

    /// Checks `target` and builds its request.
    init(_ target: LoadTarget) throws(LoadConfigurationError) {
        func invalid(_ reason: String) -> LoadConfigurationError {
            .invalidTarget(label: target.label, reason: reason)
        }
        guard !target.label.isEmpty, !target.label.unicodeScalars.contains(where: { $0.value < 32 || $0.value == 127 }) else {
            throw invalid("the label must be non-empty text without control characters")
        }
        guard (1...65535).contains(target.port) else {
            throw invalid("port \(target.port) is not in 1...65535")
        }
        let host = target.host == "localhost" ? "127.0.0.1" : target.host
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(target.port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw invalid("host '\(target.host)' is not an IPv4 address (such as 127.0.0.1) or localhost")
        }
        guard !target.method.isEmpty, target.method.utf8.allSatisfy(Self.isTokenByte) else {
            throw invalid("method '\(target.method)' is not an HTTP token")
        }
        guard target.path.hasPrefix("/") || (target.path == "*" && target.method == "OPTIONS"),
              target.path.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
        else {
            throw invalid("path '\(target.path)' must start with / and hold only visible ASCII (percent-encode the rest)")
        }
        let hostHeader = target.effectiveHostHeader
        guard !hostHeader.isEmpty, hostHeader.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw invalid("Host header '\(hostHeader)' must be non-empty visible ASCII")
        }
        var lines = ["\(target.method) \(target.path) HTTP/1.1", "Host: \(hostHeader)", "User-Agent: bulkhead-load"]
        for (name, value) in target.headers.sorted(by: { $0.key < $1.key }) {
            guard !name.isEmpty, name.utf8.allSatisfy(Self.isTokenByte) else {
                throw invalid("header name '\(name)' is not an HTTP token")
            }
            guard !Self.reservedHeaders.contains(name.lowercased()) else {
                throw invalid("header '\(name)' is set by the client itself")
            }
            guard !value.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
                throw invalid("header '\(name)' has a line break or NUL in its value")
            }
            lines.append("\(name): \(value)")
        }
        let body = Array((target.body ?? "").utf8)
        if target.body != nil || ["POST", "PUT", "PATCH"].contains(target.method) {
            lines.append("Content-Length: \(body.count)")
        }
        self.target = target
        self.address = address
        self.request = Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8) + body
        self.isHead = target.method == "HEAD"
        self.expectedBody = target.expectedBodySubstring.map { Array($0.utf8) }
    }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 48...57, 65...90, 97...122: true
        case 33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126: true
        default: false
        }
    }
}
