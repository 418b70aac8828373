#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import CBulkheadPosix
import Control
import Dispatch
import Foundation
import Logging
import Rollout
import Store
import Synchronization

/// Settings of `bulkhead serve`.
public struct SupervisorConfiguration: Sendable {
    /// Where the cohort files are.
    public var cohortsDirectory: String
    /// The data directory.
    public var data: DataDirectory
    /// The worker executable (normally this binary).
    public var workerExecutable: String
    /// Extra environment for workers, `KEY=VALUE` (fault injection in tests).
    public var workerEnvironment: [String]
    /// Margin past the wall deadline before a worker's watchdog ends it, in ms.
    public var watchdogMarginMilliseconds: Int
    /// Where the ingress listens (nil: no ingress).
    public var ingress: (host: String, port: Int)?
    /// How to run the control plane as a child (nil: none).
    public var control: ControlChildConfiguration?
    /// Opens what the agent follows to keep its replica; retried every second until
    /// it opens. By default the change feed of the control store in the data directory.
    public var openFeed: @Sendable () throws -> any ChangeFeedSource
    /// Whether the control store is the SQLite file of the data directory, which the
    /// agent opens beside the feed (on one machine). False in a fleet: the store is
    /// etcd, reached only through ``openFeed``, and no file is created.
    public var localControlStore = true
    /// In a fleet, this host's name (`--host`): a fleet rollout's stages name the
    /// hosts they cover. Nil on one machine.
    public var hostName: String?
    /// In a fleet: seconds a host may go without confirming its rollouts' stages
    /// (its feed cut off, or its reports not reaching the leader) before it puts
    /// their slots back on the last completed versions.
    public var stageConfirmationDeadline = 10.0

    /// Creates a configuration.
    public init(cohortsDirectory: String, data: DataDirectory,
                workerExecutable: String, workerEnvironment: [String] = [], watchdogMarginMilliseconds: Int = 500) {
        self.cohortsDirectory = cohortsDirectory
        self.data = data
        self.workerExecutable = workerExecutable
        self.workerEnvironment = workerEnvironment
        self.watchdogMarginMilliseconds = watchdogMarginMilliseconds
        openFeed = { try ChangeFeedReader(path: data.storeFile) }
    }
}

/// Why `bulkhead serve` could not start.
public struct SupervisorStartError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, for a person; one line per problem.
    public var description: String
}

/// The supervisor: reads the cohorts, starts and watches the worker pools, takes
/// over live workers left by a previous supervisor, serves the admin socket.
///
/// Its state is split by owner, and every owner's state is confined to one serial
/// queue (`QueueConfined`: debug builds stop at an access from any other thread);
/// socket threads, timers and the host routes post to the queue. What is not
/// confined is immutable or locks itself: the configuration, the logger, the
/// control store (a mutex) and the replica (its own connection queue).
/// No customer code ever runs here.
public final class Supervisor: @unchecked Sendable {
    let configuration: SupervisorConfiguration
    let queue = DispatchQueue(label: "bulkhead.supervisor")
    let logger: Logger
    /// Pools and their workers (`Supervisor+Workers`, `+Cohorts`).
    let table: QueueConfined<WorkerTable>
    /// What the change feed brought: the catalog workers are given and the rollouts
    /// (`Supervisor+Feed`).
    let replicaFeed: QueueConfined<ReplicaFeed>
    /// The stage runner and the local guard (`Supervisor+Stages`, `+Guard`).
    let stageRunner: QueueConfined<StageRunner>
    /// The ingress and control processes (`Supervisor+Ingress`, `+Control`).
    let helpers: QueueConfined<HelperProcesses>
    /// The agent's own lifecycle and host routes (this file, `+HostMetrics`).
    let agent: QueueConfined<AgentState>
    /// The control store, once open: written by the control side (API, poller,
    /// `--demo`, the rollout driver), only read by the host through the feed.
    let controlStore = Mutex<SQLiteStore?>(nil)
    /// The control store; throws while it cannot be opened (the host serves from its replica meanwhile).
    var store: SQLiteStore {
        get throws {
            guard let store = controlStore.withLock({ $0 }) else {
                throw ControlStoreUnavailable(path: configuration.data.storeFile)
            }
            return store
        }
    }
    /// The host replica (`DATA/host.sqlite`), the only file the supervisor writes;
    /// opened by `start()` before anything reads it, then never replaced.
    private(set) var replica: HostReplica!
    /// Kills after which a script is quarantined.
    let strikesToQuarantine = 3
    /// Lines kept per script.
    static let logLinesPerScript = 500
    let stopped = DispatchSemaphore(value: 0)

    /// Creates a supervisor; nothing starts until `start()`.
    public init(configuration: SupervisorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        // Unique across supervisor restarts, so socket paths never collide.
        let firstInstance = UInt64(Date().timeIntervalSince1970 * 1000) << 8
        table = QueueConfined(WorkerTable(nextInstance: firstInstance), queue: queue)
        replicaFeed = QueueConfined(ReplicaFeed(), queue: queue)
        stageRunner = QueueConfined(StageRunner(), queue: queue)
        helpers = QueueConfined(HelperProcesses(), queue: queue)
        agent = QueueConfined(AgentState(), queue: queue)
    }

    /// Monotonic seconds.
    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    // MARK: - Start

    /// Takes the lock, reads the cohorts, adopts live workers, starts the pools.
    /// Throws (and starts nothing) when a cohort file is bad and has no last known
    /// good config, or when another supervisor holds the data directory.
    public func start() throws {
        // On the queue, where the state lives: nothing else runs before it returns.
        try queue.sync { try startOnQueue() }
        // No signal handler of its own: SIGTERM belongs to the process's ServiceGroup,
        // which lets API requests in flight finish and only then calls `stop()`. A
        // drain started by the signal itself would pull the workers from under those
        // requests (a `cohort move` warming its scripts) and end the group early.
    }

    private func startOnQueue() throws {
        signal(SIGPIPE, SIG_IGN)
        // A write past a file size limit (`ulimit -f`, LimitFSIZE) must fail that one
        // write with EFBIG, as a full disk fails it with ENOSPC, not end the control
        // plane: by default SIGXFSZ kills the process when the writing thread does not
        // block it (NIO's threads and the main thread do not). Workers inherit this.
        signal(SIGXFSZ, SIG_IGN)
        _ = bh_set_child_subreaper()
        let data = configuration.data
        try data.create()
        try takeLock()
        do {
            replica = try HostReplica(dataDirectory: data)
        } catch {
            releaseLock()
            throw SupervisorStartError(description: "\(error)")
        }
        // The pools start from the replica whatever the control store's state: a
        // damaged or locked one is reported and retried, not fatal. With no replica
        // yet there is nothing to serve from, and the start stops naming the store.
        if let error = openControlStore(), ((try? replica.appliedRevision()) ?? nil) == nil {
            releaseLock()
            throw SupervisorStartError(description: "\(error)")
        }
        importLegacyOverrides()

        let directory = CohortDirectory.load(configuration.cohortsDirectory)
        var cohorts = directory.cohorts
        var fallbacks: [String: String] = [:]
        var fatal: [String] = []
        for error in directory.errors {
            let pool = CohortConfiguration.poolName(ofFile: error.file)
            if let knownGood = loadKnownGood(pool: pool), !cohorts.contains(where: { $0.name == pool }) {
                logger.error("cohort file refused; pool starts with its last known good config",
                             metadata: ["pool": "\(pool)", "error": "\(error)"])
                cohorts.append(knownGood)
                fallbacks[pool] = error.description
            } else {
                fatal.append(error.description)
            }
        }
        guard fatal.isEmpty else {
            releaseLock()
            throw SupervisorStartError(description: fatal.joined(separator: "\n"))
        }
        cohorts.sort { $0.order < $1.order }

        // What the control side wrote so far reaches the replica before the pools start.
        replicaFeed.catalog = loadCatalog()

        let adopted = adoptLiveWorkers()
        for original in cohorts {
            var cohort = original
            // A scale made with the CLI outlives the cohort file's `workers`.
            if let workers = (try? replica.workerCount(ofPool: cohort.name)) ?? nil {
                cohort.workers = workers
                cohort.canaryWorkers = min(cohort.canaryWorkers, workers)
            }
            try startPool(cohort, adopted: adopted[cohort.name] ?? [],
                          configSource: fallbacks[cohort.name] == nil ? "file" : "last-known-good",
                          configError: fallbacks[cohort.name])
            if fallbacks[cohort.name] == nil { saveKnownGood(original) }
        }
        // Workers of pools that no longer exist leave.
        for (pool, workers) in adopted where table.pools[pool] == nil {
            for worker in workers {
                logger.info("draining adopted worker of a removed pool", metadata: ["pool": "\(pool)", "pid": "\(worker.handle.pid)"])
                worker.handle.send(.drain)
                close(worker.listenFD)
            }
        }
        // The pools run: the stage runner acknowledges the running stages (their
        // windows start now); the driver (in the control process) resumes the rollouts.
        acknowledgeStages()
        if let address = configuration.ingress { try startIngress(host: address.host, port: address.port) }
        if let control = configuration.control { startControl(control) }
        startTimer()
    }

    /// Blocks until the supervisor has stopped (after `stop()`).
    public func wait() {
        stopped.wait()
    }

    /// Drains every worker (in-flight requests finish) and stops.
    public func stop() {
        queue.async { self.beginShutdown() }
    }

    private func startPool(_ cohort: CohortConfiguration, adopted: [AdoptedWorker], configSource: String, configError: String?) throws {
        let listenFD: Int32
        let port: Int
        if let first = adopted.first {
            // The pool's socket lives on in its workers: take it back instead of
            // binding again (a second bind would fail, and must).
            listenFD = WorkerSpawner.highDescriptor(first.listenFD)
            for other in adopted.dropFirst() { close(other.listenFD) }
            port = (try? Sockets.localPort(of: listenFD)) ?? cohort.port
            if cohort.port != 0 && port != cohort.port {
                logger.warning("pool keeps the port of its adopted workers until they are replaced",
                               metadata: ["pool": "\(cohort.name)", "port": "\(port)", "configured": "\(cohort.port)"])
            }
        } else {
            do {
                let bound = try Sockets.listenTCP(host: "127.0.0.1", port: cohort.port)
                listenFD = WorkerSpawner.highDescriptor(bound.fd)
                port = bound.port
            } catch {
                throw SupervisorStartError(description: "pool \(cohort.name): \(error)")
            }
        }
        let pool = PoolState(cohort: cohort, listenFD: listenFD, port: port, configSource: configSource, configError: configError)
        table.pools[cohort.name] = pool
        logger.info("pool listening", metadata: [
            "pool": "\(cohort.name)", "address": "127.0.0.1:\(port)", "workers": "\(cohort.workers)",
            "config": "\(configSource)",
        ])
        for worker in adopted {
            let handle = worker.handle
            if handle.slot < pool.slots.count, pool.slots[handle.slot] == nil {
                pool.slots[handle.slot] = handle
                attach(handle, connection: worker.connection)
                logger.info("adopted worker", metadata: ["pool": "\(cohort.name)", "slot": "\(handle.slot)", "pid": "\(handle.pid)"])
            } else {
                // A slot the pool no longer has, or a duplicate: let it finish and go.
                pool.leaving.append(handle)
                attach(handle, connection: worker.connection)
                handle.draining = true
                handle.send(.drain)
            }
        }
        for slot in pool.slots.indices where pool.slots[slot] == nil {
            spawnWorker(pool: pool, slot: slot)
        }
    }

    // MARK: - Lock

    private func takeLock() throws {
        do {
            agent.lockFD = try PidLock.take(configuration.data.lockFile).descriptor
        } catch let held as PidLock.Held {
            throw SupervisorStartError(
                description: "another supervisor (pid \(held.holder)) holds \(configuration.data.root); stop it or use another --data")
        } catch {
            throw SupervisorStartError(description: "\(error)")
        }
    }

    func releaseLock() {
        if agent.lockFD >= 0 {
            close(agent.lockFD)
            agent.lockFD = -1
        }
    }

    // MARK: - Last known good

    private func loadKnownGood(pool: String) -> CohortConfiguration? {
        guard ResourceName.isValid(pool) else { return nil }
        return (try? replica.knownGood(pool: pool))??.configuration
    }

    private func saveKnownGood(_ cohort: CohortConfiguration) {
        if (try? replica.knownGood(pool: cohort.name))??.configuration == cohort { return }
        do {
            try replica.saveKnownGood(cohort, actor: "supervisor")
        } catch {
            logger.warning("cannot keep the cohort as last known good", metadata: ["pool": "\(cohort.name)", "error": "\(error)"])
        }
    }

    // MARK: - Timer and signals

    private func startTimer() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + .milliseconds(20), repeating: .milliseconds(20))
        timer.setEventHandler { [unowned self] in
            let now = Self.now()
            self.tick(now: now)
            self.followFeed()
            self.advanceMoves(now: now)
            // Before the stage reports: the guard never waits for the driver, and its
            // trip goes out with the next report.
            self.guardTick(now: now)
            self.checkStageConfirmation(now: Self.wallClock())
            self.stageRunner.ticks += 1
            if self.stageRunner.ticks % 10 == 0 { self.runStages() }
        }
        timer.resume()
        agent.timer = timer
    }

    func beginShutdown() {
        guard !agent.shuttingDown else { return }
        agent.shuttingDown = true
        stopIngress()
        stopControl()
        for pool in table.pools.values {
            pool.restartDue.removeAll()
            for worker in pool.allWorkers {
                worker.draining = true
                worker.send(.drain)
            }
        }
        // Workers finish in-flight requests within their wall deadline; past this
        // they are killed so a stop always ends.
        let longestWall = table.pools.values.map(\.cohort.limits.wallMilliseconds).max() ?? 1000
        let deadline = Self.now() + Double(longestWall) / 1000 + 5
        checkShutdown(deadline: deadline)
    }

    private func checkShutdown(deadline: Double) {
        let remaining = table.pools.values.flatMap(\.allWorkers)
        let processes = [helpers.ingress?.process, helpers.control?.process].compactMap { $0 }
        let processesRunning = processes.map { $0.stillRunningChild() }.contains(true)
        if (remaining.isEmpty && !processesRunning) || Self.now() > deadline {
            for process in processes where process.stillRunningChild() { process.signal(SIGKILL) }
            reapControl()
            if helpers.ingress != nil { unlink(ingressPidFile) }
            for worker in remaining {
                logger.warning("worker did not drain in time; killing it", metadata: ["pid": "\(worker.pid)"])
                kill(worker.pid, SIGKILL)
            }
            reapChildren()
            for pool in table.pools.values { close(pool.listenFD) }
            agent.timer?.cancel()
            releaseLock()
            logger.info("supervisor stopped")
            stopped.signal()
            return
        }
        queue.asyncAfter(deadline: .now() + .milliseconds(20)) { self.checkShutdown(deadline: deadline) }
    }

    // MARK: - Scripts

    /// Sends workers what changed between `before` and the current catalog.
    func publishCatalogChanges(from before: ScriptCatalog) {
        if replicaFeed.catalog.assignments != before.assignments {
            for pool in table.pools.values {
                for worker in pool.allWorkers { worker.send(.customers(assignments: replicaFeed.catalog.assignments)) }
            }
        }
        for (customer, scripts) in replicaFeed.catalog.scripts {
            guard let cohort = replicaFeed.catalog.assignments[customer], let pool = table.pools[cohort] else { continue }
            let moved = before.assignments[customer] != cohort
            for (name, spec) in scripts where moved || before.scripts[customer]?[name] != spec {
                let key = "\(customer)/\(name)"
                table.strikes[key] = nil
                logger.info("script version published", metadata: ["script": "\(key)", "version": "\(spec.version)", "pool": "\(cohort)"])
                let sent = moved ? spec : scheduled(spec, after: before.scripts[customer]?[name])
                for worker in pool.allWorkers { worker.send(.putScript(sent)) }
                replicaFeed.follower.scriptsPushed += pool.allWorkers.count
            }
        }
        // Scripts deleted, or customers moved away: their old pool unloads them.
        for (customer, scripts) in before.scripts {
            guard let cohort = before.assignments[customer], let pool = table.pools[cohort] else { continue }
            for name in scripts.keys {
                let stillHere = replicaFeed.catalog.scripts[customer]?[name] != nil && replicaFeed.catalog.assignments[customer] == cohort
                if !stillHere {
                    for worker in pool.allWorkers { worker.send(.removeScript(customer: customer, name: name)) }
                    replicaFeed.follower.scriptsPushed += pool.allWorkers.count
                }
            }
        }
    }
}

/// The agent's own state, on the supervisor's queue.
struct AgentState {
    /// The data directory's lock, -1 when not held.
    var lockFD: Int32 = -1
    /// Set once a stop began: nothing new starts.
    var shuttingDown = false
    /// The 20 ms tick that drives supervision, the feed, the guard and the stages.
    var timer: DispatchSourceTimer?
    /// The host's `/metrics` and `/healthz` address once it listens.
    var metricsAddress: String?
}
