/// The version of the supervisor–worker control protocol. A binary rollout runs
/// workers of another build, so both sides check it in the handshake; a worker
/// whose version the supervisor does not speak is replaced, never adopted.
///
/// Only a change that a peer of the same version would misread bumps it (every
/// check is an equality, so a bump cuts binary rollouts between the builds). An
/// optional field that older peers ignore and whose absence newer ones handle
/// does not: `WorkerStats.byVersion` is one (an older worker's heartbeats are
/// split by the supervisor instead, see `VersionCounts.attributed`).
public let controlProtocolVersion = 1

/// A customer's script as the supervisor ships it to a worker.
public struct ScriptSpec: Codable, Sendable, Equatable {
    /// The customer that owns it.
    public var customer: String
    /// The script's name.
    public var name: String
    /// The active version.
    public var version: Int
    /// Lua source text.
    public var source: String
    /// A gradual deployment's split: a share of the requests goes to its candidate
    /// version. Nil for a script served by its active version alone (and from
    /// supervisors built before deployments).
    public var split: ScriptSplit?

    /// Creates a spec.
    public init(customer: String, name: String, version: Int, source: String, split: ScriptSplit? = nil) {
        self.customer = customer
        self.name = name
        self.version = version
        self.source = source
        self.split = split
    }
}

/// Who a worker is, sent in its handshake.
public struct WorkerIdentity: Codable, Sendable, Equatable {
    /// Protocol version the worker speaks.
    public var protocolVersion: Int
    /// Process id.
    public var pid: Int32
    /// The pool it serves.
    public var pool: String
    /// Its slot in the pool (stable across restarts).
    public var slot: Int
    /// Unique per spawned worker, part of its socket path.
    public var instance: UInt64
    /// Artifacts it runs.
    public var versions: ArtifactVersions
    /// Seconds since the epoch when it started.
    public var startedAt: Double
    /// Whether it has been told to drain.
    public var draining: Bool

    /// Creates an identity.
    public init(pid: Int32, pool: String, slot: Int, instance: UInt64, versions: ArtifactVersions, startedAt: Double, draining: Bool) {
        self.protocolVersion = controlProtocolVersion
        self.pid = pid
        self.pool = pool
        self.slot = slot
        self.instance = instance
        self.versions = versions
        self.startedAt = startedAt
        self.draining = draining
    }
}

/// Messages from the supervisor to a worker.
public enum SupervisorMessage: Codable, Sendable, Equatable {
    /// Opens a connection. With `wantListener` the worker answers its hello with
    /// the pool's listening socket (SCM_RIGHTS), so a new supervisor can start
    /// more workers for a pool it adopted.
    case hello(protocolVersion: Int, supervisorPID: Int32, wantListener: Bool)
    /// The cohort the worker serves: limits, pool name.
    case configure(cohort: CohortConfiguration)
    /// The whole customer → pool table, to answer `wrong-pool`.
    case customers(assignments: [String: String])
    /// Load (or replace) a script; the old version serves until the new one loaded.
    case putScript(ScriptSpec)
    /// Unload a script.
    case removeScript(customer: String, name: String)
    /// Quarantine or release a script.
    case quarantine(customer: String, name: String, quarantined: Bool)
    /// Load a platform artifact version: the runtime's Lua source or the rules JSON
    /// (binaries are rolled out by replacing workers). A version that fails to load
    /// leaves the worker on its last known good one.
    case setArtifact(kind: ArtifactKind, version: Int, content: String)
    /// Everything the worker needs has been sent: start accepting (no-op when it
    /// already does). A new worker never accepts before its scripts are loaded.
    case start
    /// Stop accepting, finish in-flight requests, then exit.
    case drain
}

/// Messages from a worker to the supervisor.
public enum WorkerMessage: Codable, Sendable, Equatable {
    /// The handshake answer.
    case hello(WorkerIdentity)
    /// Configured, scripts loaded: the worker accepts traffic.
    case ready
    /// Cumulative stats, about every 200 ms.
    case heartbeat(WorkerStats)
    /// A script's `log(...)` line or error.
    case log(customer: String, script: String, line: String)
    /// A script version is live on this worker.
    case scriptLoaded(customer: String, name: String, version: Int)
    /// A script version failed to load; the worker keeps the old one.
    case scriptFailed(customer: String, name: String, version: Int, kind: String, message: String)
    /// A platform artifact version is live on this worker.
    case artifactLoaded(kind: ArtifactKind, version: Int)
    /// A platform artifact version was refused; the worker keeps its last known good one.
    case artifactFailed(kind: ArtifactKind, version: Int, message: String)
    /// The watchdog is about to end this worker: the script overran its wall deadline in C.
    case watchdog(customer: String, script: String, elapsedMilliseconds: Int)
}
