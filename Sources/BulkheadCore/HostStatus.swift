/// What `bulkhead status --json` prints and the admin socket answers: the host at a glance.
public struct HostStatus: Codable, Sendable, Equatable {
    /// The supervisor's pid.
    public var supervisorPID: Int32
    /// Seconds since the epoch when this status was taken.
    public var takenAt: Double
    /// Every pool, in rollout order.
    public var pools: [PoolStatus]
    /// The control API's address (`127.0.0.1:8080`), once it listens.
    public var api: String?
    /// The host's own `/metrics` and `/healthz` address (`127.0.0.1:8090`), once it
    /// listens (nil with `--metrics off`).
    public var metrics: String?
    /// The ingress's address and pid, when it runs.
    public var ingress: String?
    /// The ingress process.
    public var ingressPID: Int32?
    /// Rollouts in progress, one line each (`rules v2: running stage 1`).
    public var rollouts: [String]?
    /// Whether rollouts are frozen (break glass).
    public var frozen = false
    /// The version each pinned artifact kind is held at (break glass), by kind name;
    /// a kind is absent when not pinned.
    public var pins: [String: Int] = [:]
    /// Why ``frozen`` and ``pins`` could not be read from the store, when they could not.
    public var breakGlassError: String?
    /// Where the host's replica stands on the control store's change feed.
    public var feed: FeedStatus?
    /// The control process (`bulkhead control`) as the host agent supervises it.
    public var control: ControlProcessStatus?

    /// Creates a status.
    public init(supervisorPID: Int32, takenAt: Double, pools: [PoolStatus], api: String? = nil) {
        self.supervisorPID = supervisorPID
        self.takenAt = takenAt
        self.pools = pools
        self.api = api
    }
}

/// One pool in `HostStatus`.
public struct PoolStatus: Codable, Sendable, Equatable {
    /// Pool (cohort) name.
    public var name: String
    /// Rollout order.
    public var order: Int
    /// The real port on 127.0.0.1.
    public var port: Int
    /// Workers the pool should have.
    public var desiredWorkers: Int
    /// Where the running config came from: `file` or `last-known-good`.
    public var configSource: String
    /// Why the cohort file was refused, when the pool runs its last known good config.
    public var configError: String?
    /// Whether the pool restarted too often and backs off.
    public var degraded: Bool
    /// Worker restarts since the supervisor started.
    public var restarts: Int
    /// Scripts quarantined in this pool, `customer/name`.
    public var quarantined: [String]
    /// The workers.
    public var workers: [WorkerStatus]

    /// Creates a pool status.
    public init(name: String, order: Int, port: Int, desiredWorkers: Int, configSource: String, configError: String?,
                degraded: Bool, restarts: Int, quarantined: [String], workers: [WorkerStatus]) {
        self.name = name
        self.order = order
        self.port = port
        self.desiredWorkers = desiredWorkers
        self.configSource = configSource
        self.configError = configError
        self.degraded = degraded
        self.restarts = restarts
        self.quarantined = quarantined
        self.workers = workers
    }
}

/// One worker in `PoolStatus`.
public struct WorkerStatus: Codable, Sendable, Equatable {
    /// Slot in the pool.
    public var slot: Int
    /// Process id.
    public var pid: Int32
    /// Whether it accepts traffic.
    public var ready: Bool
    /// Whether this supervisor started it (false: adopted after a takeover).
    public var adopted: Bool
    /// Seconds since its last heartbeat.
    public var heartbeatAge: Double
    /// Its latest cumulative stats.
    public var stats: WorkerStats
    /// The script version this worker confirmed loading last (`customer/name@version`).
    public var lastLoadedScript: String?

    /// Creates a worker status.
    public init(slot: Int, pid: Int32, ready: Bool, adopted: Bool, heartbeatAge: Double, stats: WorkerStats) {
        self.slot = slot
        self.pid = pid
        self.ready = ready
        self.adopted = adopted
        self.heartbeatAge = heartbeatAge
        self.stats = stats
    }
}

/// The host replica against the control store's change feed, in `HostStatus`.
public struct FeedStatus: Codable, Sendable, Equatable {
    /// The feed revision the replica (and what the workers were sent) reflects; nil
    /// before the first copy.
    public var appliedRevision: Int?
    /// The newest revision the feed had at the last look.
    public var latestRevision: Int
    /// Script rows (with their sources) read from the control store since start.
    public var scriptsRead: Int
    /// Script messages (load or unload) sent to workers since start, one per worker.
    public var scriptsPushed: Int
    /// Times the replica was copied whole (new, or behind the feed's pruning).
    public var fullCopies: Int
    /// Why the control store cannot be followed right now, when it cannot.
    public var problem: String?
    /// What the agent follows (the control store file, or `etcd URLS under PREFIX`);
    /// nil before it opened.
    public var source: String?
    /// Since when (seconds since the epoch) the source has been cut off from the
    /// store it follows (etcd unreachable, a watch that ended): the host serves its
    /// replica meanwhile, at ``appliedRevision``. Nil while it follows, and for a
    /// source that cannot tell.
    public var cutOffSince: Double?
    /// In a fleet: since when (seconds since the epoch) this host has run the last
    /// completed versions instead of its rollouts' stages, having been unable to
    /// confirm them (cut off past the deadline). Nil while it follows them.
    public var stagesSuspendedSince: Double?

    /// Creates a value.
    public init(appliedRevision: Int?, latestRevision: Int, scriptsRead: Int, scriptsPushed: Int, fullCopies: Int,
                problem: String?, source: String? = nil, cutOffSince: Double? = nil, stagesSuspendedSince: Double? = nil) {
        self.stagesSuspendedSince = stagesSuspendedSince
        self.appliedRevision = appliedRevision
        self.latestRevision = latestRevision
        self.scriptsRead = scriptsRead
        self.scriptsPushed = scriptsPushed
        self.fullCopies = fullCopies
        self.problem = problem
        self.source = source
        self.cutOffSince = cutOffSince
    }
}

/// The control process in `HostStatus`: the host agent starts it, checks its
/// `/healthz` on `control.sock` every second, and replaces it when it stops answering.
public struct ControlProcessStatus: Codable, Sendable, Equatable {
    /// Its pid, while one runs.
    public var pid: Int32?
    /// Where its API listens on TCP, from its last answered health check.
    public var api: String?
    /// Whether its last health check answered.
    public var up: Bool
    /// Times it was started again since this agent started (exits and health kills).
    public var restarts: Int
    /// Health checks missed in a row.
    public var missedChecks: Int
    /// Whether this agent adopted it from a previous agent (not its child).
    public var adopted: Bool

    /// A control process status.
    public init(pid: Int32?, api: String?, up: Bool, restarts: Int, missedChecks: Int, adopted: Bool) {
        self.pid = pid
        self.api = api
        self.up = up
        self.restarts = restarts
        self.missedChecks = missedChecks
        self.adopted = adopted
    }
}
