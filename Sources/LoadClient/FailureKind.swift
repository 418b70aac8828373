/// Why a request ended without a usable response. Each failed request is counted
/// under exactly one kind, and never retried.
public enum FailureKind: String, Sendable, Codable, CaseIterable, Hashable {
    /// The connection could not be opened: refused, or not accepted within the
    /// connect timeout. No request bytes were sent.
    case connect
    /// The connection was reset (ECONNRESET, EPIPE) while sending or before the
    /// response was complete.
    case reset
    /// The server closed the connection before the response was complete.
    case eof
    /// The response was not complete within the read timeout.
    case timeout
    /// The bytes received were not a valid HTTP/1.x response, or more bytes came
    /// than the one response.
    case badResponse = "bad-response"
    /// A 2xx response whose body or `x-bulkhead-pool` did not match the target's
    /// expectations.
    case mismatch
}

/// The outcome of one request, as recorded by its connection.
enum Outcome: Equatable {
    /// A 2xx response that met the target's expectations.
    case ok
    /// A complete response with a non-2xx status and its `x-bulkhead-error` kind.
    case status(Int, errorKind: String?)
    /// No usable response.
    case failure(FailureKind)
}
