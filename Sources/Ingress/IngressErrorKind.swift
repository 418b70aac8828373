import BulkheadCore

/// The errors the ingress answers itself, in the data plane's error shape
/// (`{"error": KIND, "message": …, "request_id": …}` and `x-bulkhead-error: KIND`).
/// The first three are the workers' own kinds; the gateway ones exist only here.
enum IngressErrorKind: Sendable {
    /// 404: no customer is named, or the routing table does not know it.
    case noScript
    /// 400 (or the parser's 408, 431, 501, 505): malformed HTTP.
    case badRequest
    /// 413: a body over the limit of the customer's pool (or, for a request not
    /// routed to a pool, over the largest pool's limit).
    case tooLarge
    /// 502: the pool could not be reached or did not answer properly.
    case badGateway
    /// 504: the pool stayed silent past the response timeout.
    case gatewayTimeout

    /// The `error` field and `x-bulkhead-error` value.
    var name: String {
        switch self {
        case .noScript: RequestErrorKind.noScript.rawValue
        case .badRequest: RequestErrorKind.badRequest.rawValue
        case .tooLarge: RequestErrorKind.tooLarge.rawValue
        case .badGateway: "bad-gateway"
        case .gatewayTimeout: "gateway-timeout"
        }
    }

    /// The status it answers with, unless the parser gave a more precise one.
    var status: Int {
        switch self {
        case .noScript: 404
        case .badRequest: 400
        case .tooLarge: 413
        case .badGateway: 502
        case .gatewayTimeout: 504
        }
    }
}
