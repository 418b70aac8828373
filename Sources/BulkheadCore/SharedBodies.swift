/// Bodies the control plane and the host agent exchange over HTTP (and the CLI
/// reads): defined once here, where both processes see them.

/// Every refusal: `{"error": KIND, "message": …}`.
public struct ErrorBody: Codable, Sendable {
    /// The kind (`not-found`, `too-large`, …): `ControlError.Kind`'s raw value.
    public var error: String
    /// What failed and what to do.
    public var message: String

    /// A refusal's body.
    public init(error: String, message: String) {
        self.error = error
        self.message = message
    }
}

/// `GET /healthz`.
public struct Health: Codable, Sendable {
    /// `ok` while the process answers.
    public var status: String
    /// Pools running (the host), or cohorts known (control).
    public var pools: Int
    /// Where the control API listens on TCP (control's `/healthz` only): how the host
    /// agent learns the address its control child bound.
    public var api: String?

    /// A health answer.
    public init(status: String, pools: Int, api: String? = nil) {
        self.status = status
        self.pools = pools
        self.api = api
    }
}

/// A script's recent log lines and errors.
public struct LogLines: Codable, Sendable {
    /// Oldest first.
    public var lines: [String]

    /// Log lines, oldest first.
    public init(lines: [String]) {
        self.lines = lines
    }
}

/// A released quarantine (`customer/name`).
public struct Released: Codable, Sendable {
    /// `customer/name`.
    public var released: String

    /// A released script, `customer/name`.
    public init(released: String) {
        self.released = released
    }
}
