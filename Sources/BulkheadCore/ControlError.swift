/// A refused control-plane operation: a machine-readable kind and a message a person
/// can act on. It carries no HTTP status: only the HTTP layer (ControlAPI) maps a
/// kind to one, so the operations below it stay the same whichever way they are
/// reached (TCP, `control.sock`, `admin.sock`, or a call in process).
public struct ControlError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as a fixed set; the raw value is the `error` field of the
    /// API's error body and what the CLI prints before the message.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// A request's body or arguments are malformed or out of range.
        case invalid
        /// A customer or script name breaks `ResourceName.rule`.
        case invalidName = "invalid-name"
        /// A runtime artifact failed its check.
        case invalidRuntime = "invalid-runtime"
        /// A rules artifact failed validation.
        case invalidRules = "invalid-rules"
        /// A worker binary failed its probe.
        case invalidBinary = "invalid-binary"
        /// A cohort policy does not parse, or names a cohort there is no pool for.
        case invalidPolicy = "invalid-policy"
        /// A script does not compile.
        case syntax
        /// A script's top-level chunk raised an error.
        case scriptError = "script-error"
        /// A script defines no `handle` function.
        case noHandle = "no-handle"
        /// A script's top-level chunk spent its instruction budget.
        case limitCPU = "limit-cpu"
        /// A script's top-level chunk passed its memory cap.
        case limitMemory = "limit-memory"
        /// A script's top-level chunk ran past its wall deadline.
        case limitWall = "limit-wall"
        /// The script check ended without a verdict.
        case checkFailed = "check-failed"
        /// A script is not UTF-8 text.
        case notUTF8 = "not-utf8"
        /// A customer names a cohort that does not exist.
        case noCohort = "no-cohort"
        /// No or a wrong token.
        case unauthorized
        /// The caller is known but may not use this listener (a peer of another uid).
        case forbidden
        /// No such customer, script, version, pool, rollout or route.
        case notFound = "not-found"
        /// The path exists but not with this method.
        case methodNotAllowed = "method-not-allowed"
        /// The thing to create exists already.
        case exists
        /// The store refused a change that contradicts what it holds.
        case conflict
        /// The customer is already in that cohort.
        case sameCohort = "same-cohort"
        /// Rollouts are frozen (break glass).
        case frozen
        /// The artifact kind is pinned (break glass).
        case pinned
        /// Unpin of a kind that is not pinned.
        case notPinned = "not-pinned"
        /// A break-glass rollback to a version a gate rejected, without `--allow-rejected`.
        case rejectedVersion = "rejected-version"
        /// A rollout of that kind is running already.
        case rolloutRunning = "rollout-running"
        /// The rollout has ended; it takes no more commands.
        case rolloutEnded = "rollout-ended"
        /// The rollout engine refused the command.
        case rollout
        /// Unquarantine of a script that is not quarantined.
        case notQuarantined = "not-quarantined"
        /// The body is larger than the limit.
        case tooLarge = "too-large"
        /// Too many uploads in a second.
        case rateLimited = "rate-limited"
        /// The customer's pool is not running.
        case noPool = "no-pool"
        /// The store cannot take a write now.
        case controlPlaneUnavailable = "control-plane-unavailable"
        /// The host agent did not answer the control plane in time (it is down,
        /// restarting or stuck); what only the host knows cannot be shown now.
        case hostUnavailable = "host-unavailable"
        /// The disk under the store is full.
        case diskFull = "disk-full"
        /// The store failed.
        case store
        /// Something the build should contain is missing (the OpenAPI spec).
        case missing
        /// An operation failed in a way its caller cannot fix.
        case `internal`
    }

    /// What kind of refusal.
    public var kind: Kind
    /// What failed and what to do.
    public var message: String

    /// Creates an error.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// `kind: message`.
    public var description: String { "\(kind.rawValue): \(message)" }

    /// A customer's missing script (also what another customer's script looks like).
    public static func noSuchScript(_ name: String) -> ControlError {
        ControlError(.notFound, "no script named '\(name)'")
    }
}
