#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore

/// One worker process the supervisor knows about, started by it or adopted.
final class WorkerHandle {
    let pid: pid_t
    let pool: String
    let slot: Int
    let instance: UInt64
    /// Started by this supervisor (it can `waitpid` it); adopted workers are not its children.
    let isChild: Bool
    let startedAt: Double
    var connection: FrameConnection?
    var lastHeartbeat: Double
    var stats = WorkerStats()
    var ready = false
    var draining = false
    /// Set once the worker is gone (connection closed or process reaped).
    var exited = false
    /// A kill was ordered by the supervisor (missed heartbeats, scale down).
    var killReason: String?
    /// The customer script (`customer/name`) the worker's end is blamed on: the
    /// watchdog named it before ending the worker, or the crashed worker's note did.
    /// A rollout's gate leaves such an end out of the stage's crashes.
    var blamedScript: String?
    /// The script version it confirmed loading last (`customer/name@version`), for `status`.
    var lastLoadedScript: String?

    init(pid: pid_t, pool: String, slot: Int, instance: UInt64, isChild: Bool, now: Double) {
        self.pid = pid
        self.pool = pool
        self.slot = slot
        self.instance = instance
        self.isChild = isChild
        self.startedAt = now
        self.lastHeartbeat = now
    }

    /// Sends a message if connected.
    @discardableResult
    func send(_ message: SupervisorMessage) -> Bool {
        connection?.send(ControlCodec.encode(message)) ?? false
    }
}

/// One pool: its cohort, listening socket, slots and restart policy.
final class PoolState {
    var cohort: CohortConfiguration
    /// The pool's listening socket, bound once by a supervisor and inherited by
    /// every worker (or taken back from an adopted worker).
    var listenFD: Int32
    var port: Int
    /// The current worker of each slot (nil while a replacement is pending).
    var slots: [WorkerHandle?]
    /// When a slot's replacement is due (monotonic seconds).
    var restartDue: [Int: Double] = [:]
    var policy: RestartPolicy
    var configSource: String
    var configError: String?
    /// Workers leaving the pool (drained), kept until they exit.
    var leaving: [WorkerHandle] = []
    /// Per slot, a worker that keeps serving until its replacement is ready.
    var awaitingReplacement: [Int: WorkerHandle] = [:]

    init(cohort: CohortConfiguration, listenFD: Int32, port: Int, configSource: String, configError: String?) {
        self.cohort = cohort
        self.listenFD = listenFD
        self.port = port
        self.slots = Array(repeating: nil, count: cohort.workers)
        self.policy = RestartPolicy(cohort.restart)
        self.configSource = configSource
        self.configError = configError
    }

    /// Every live worker, in slots or leaving.
    var allWorkers: [WorkerHandle] {
        slots.compactMap { $0 }.filter { !$0.exited } + leaving.filter { !$0.exited }
    }
}
