/// A refused control-plane operation: the HTTP status the API answers with, a short
/// machine-readable kind and a message a person can act on. The admin socket and
/// the CLI carry the same three fields.
public struct ControlError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// HTTP status (400, 401, 404, 409, 413, 429, 500, 503).
    public var status: Int
    /// Kind: `syntax`, `no-handle`, `limit-cpu`, `too-large`, `not-utf8`, `not-found`, …
    public var kind: String
    /// What failed and what to do.
    public var message: String

    /// Creates an error.
    public init(status: Int, kind: String, message: String) {
        self.status = status
        self.kind = kind
        self.message = message
    }

    /// `kind: message`.
    public var description: String { "\(kind): \(message)" }

    /// 404 for a customer's missing script (also what another customer's script looks like).
    public static func noSuchScript(_ name: String) -> ControlError {
        ControlError(status: 404, kind: "not-found", message: "no script named '\(name)'")
    }
}
