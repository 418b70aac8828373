/// Every way a data-plane request can fail, with the status it answers.
///
/// The raw value is the `error` field of the JSON body and the `x-bulkhead-error` header.
public enum RequestErrorKind: String, Codable, Sendable, CaseIterable {
    /// Unknown customer or script.
    case noScript = "no-script"
    /// The customer belongs to another cohort.
    case wrongPool = "wrong-pool"
    /// The script raised an error or returned a bad response.
    case scriptError = "script-error"
    /// The request's instruction budget was spent.
    case limitCPU = "limit-cpu"
    /// The script's state hit its memory cap.
    case limitMemory = "limit-memory"
    /// The request passed its wall-clock deadline.
    case limitWall = "limit-wall"
    /// The script was quarantined for killing workers.
    case quarantined = "quarantined"
    /// A rule blocked the request.
    case blocked = "blocked"
    /// Malformed HTTP.
    case badRequest = "bad-request"
    /// A request body over the cohort's `max_body_kb`.
    case tooLarge = "too-large"

    /// The HTTP status this kind answers with.
    public var status: Int {
        switch self {
        case .noScript: 404
        case .wrongPool: 421
        case .scriptError: 500
        case .limitCPU, .limitMemory, .limitWall, .quarantined: 503
        case .blocked: 403
        case .badRequest: 400
        case .tooLarge: 413
        }
    }
}
