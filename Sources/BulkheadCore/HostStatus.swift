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
