import Foundation

/// A customer script's deployment as stored: which version it moves to, from which,
/// where it stands, and the deployment engine's own state.
///
/// Like ``RolloutRecord``, the store does not interpret ``status`` or ``state``: the
/// engine owns both. The store owns what the data plane serves: the script's split
/// (which share of its requests the candidate gets) and, once a deployment ends,
/// which version is active.
public struct DeploymentRecord: Codable, Sendable, Equatable {
    /// The deployment id, counting from 1, never reused (one numbering for all scripts).
    public var id: Int
    /// The script's owner.
    public var customer: String
    /// The script.
    public var name: String
    /// The version deployed (the candidate).
    public var version: Int
    /// The version that was active when the deployment began.
    public var fromVersion: Int
    /// The request header whose value keys the split (lower case), nil for the
    /// client's address.
    public var keyHeader: String?
    /// The candidate's share of requests now, in percent (0 once finished).
    public var percent: Double
    /// The engine's status word (`running`, `paused`, `completed`, `rolled-back`, `aborted`).
    public var status: String
    /// Whether the deployment is over; a paused one is not.
    public var finished: Bool
    /// The engine's serialized state (JSON), kept as it was given.
    public var state: Data
    /// When it was created.
    public var createdAt: Date
    /// When it was last updated.
    public var updatedAt: Date
    /// Who started it (an audit actor).
    public var createdBy: String

    /// Creates a value.
    public init(
        id: Int, customer: String, name: String, version: Int, fromVersion: Int, keyHeader: String?, percent: Double,
        status: String, finished: Bool, state: Data, createdAt: Date, updatedAt: Date, createdBy: String
    ) {
        self.id = id
        self.customer = customer
        self.name = name
        self.version = version
        self.fromVersion = fromVersion
        self.keyHeader = keyHeader
        self.percent = percent
        self.status = status
        self.finished = finished
        self.state = state
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.createdBy = createdBy
    }
}

/// How a deployment's end changes the script it deployed.
public enum DeploymentEnd: Sendable, Equatable {
    /// The candidate becomes the active version (it passed, or was promoted).
    case promote
    /// The active version stays (rolled back, aborted).
    case revert
}

/// Gradual deployments of customers' scripts: their records and the split each one
/// puts on its script. Part of the control store, so the data plane follows them
/// through the change feed like any script change.
///
/// Contract (besides ``BulkheadStore``'s):
/// - At most one unfinished deployment per script; ``StoreError/Kind/conflict`` otherwise.
/// - While a deployment is unfinished, its script's ``ActiveScript/spec`` carries a
///   ``ScriptSplit`` (deployment id, candidate version and source, share, key header)
///   whenever the share is above 0; every change of the split or of the active
///   version records a `.script(customer:name:)` change in the feed.
/// - A live upload (``ScriptStore/putScriptVersion(customer:name:source:actor:)``)
///   of a script under an unfinished deployment is refused (conflict); a rollback or
///   a delete of it ends the deployment (status `aborted`, split cleared) in the
///   same transaction.
public protocol DeploymentStore: Sendable {
    /// Stores `source` as the script's next version without making it active (a new
    /// script gets its first version active, since there is nothing else to serve).
    /// Lifts nothing: the active version and its quarantine stay as they are.
    func putScriptVersionInactive(customer: String, name: String, source: String, actor: String) throws -> ScriptVersion

    /// Creates a deployment of `version` (which must exist and differ from the active
    /// one) of the customer's script, from its active version, with `percent` of the
    /// requests going to the candidate from now.
    ///
    /// Throws ``StoreError/Kind/notFound`` for an unknown script or version,
    /// ``StoreError/Kind/conflict`` while another deployment of the script is
    /// unfinished or when `version` is already active.
    func createDeployment(
        customer: String, name: String, version: Int, keyHeader: String?, percent: Double, status: String, state: Data,
        actor: String
    ) throws -> DeploymentRecord

    /// Replaces a deployment's status, state and share; `end` finishes it for good
    /// (the share goes to 0 and the split is cleared, and `.promote` makes the
    /// candidate the active version, lifting a quarantine as an upload does).
    ///
    /// Every update is audited, so persist on transitions (step passed, paused,
    /// rolled back), not on every tick. Throws ``StoreError/Kind/conflict`` for a
    /// finished deployment.
    func updateDeployment(id: Int, status: String, state: Data, percent: Double, end: DeploymentEnd?, actor: String) throws
        -> DeploymentRecord

    /// One deployment, or nil.
    func deployment(id: Int) throws -> DeploymentRecord?

    /// The deployments of one script of the customer, newest first, at most `limit`.
    func deployments(customer: String, name: String, limit: Int) throws -> [DeploymentRecord]

    /// Every unfinished deployment (running or paused), oldest first.
    func unfinishedDeployments() throws -> [DeploymentRecord]
}
