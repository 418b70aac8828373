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

    /// Creates a configuration.
    public init(cohortsDirectory: String, data: DataDirectory,
                workerExecutable: String, workerEnvironment: [String] = [], watchdogMarginMilliseconds: Int = 500) {
        self.cohortsDirectory = cohortsDirectory
        self.data = data
        self.workerExecutable = workerExecutable
        self.workerEnvironment = workerEnvironment
        self.watchdogMarginMilliseconds = watchdogMarginMilliseconds
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
/// All state lives on one serial queue; socket threads and timers post to it.
/// No customer code ever runs here.
public final class Supervisor: @unchecked Sendable {
    let configuration: SupervisorConfiguration
    let queue = DispatchQueue(label: "bulkhead.supervisor")
    var logger: Logger
    var pools: [String: PoolState] = [:]
    var catalog = ScriptCatalog()
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
    /// The host replica (`DATA/host.sqlite`), the only file the supervisor writes; opened by `start()`.
    var replica: HostReplica!
    /// Following the control store's change feed (on the queue).
    var feed = FeedFollower()
    /// Watchdog kills per script (`customer/name`) since its current version.
    var strikes: [String: Int] = [:]
    /// Scripts quarantined for killing workers (`customer/name`).
    var quarantined: Set<String> = []
    /// Kills after which a script is quarantined.
    let strikesToQuarantine = 3
    var nextInstance: UInt64
    /// Workers this supervisor started, by pid, until reaped.
    var children: [pid_t: WorkerHandle] = [:]
    /// The last lines of each script's log (`customer/name`).
    var scriptLogs: [String: [String]] = [:]
    /// Lines kept per script.
    static let logLinesPerScript = 500
    var lockFD: Int32 = -1
    var shuttingDown = false
    var scanning = false
    /// Rollouts in progress, one per artifact kind, as the feed last showed the
    /// driver's machines (the stage runner's view; only the driver changes them).
    var rollouts: [ArtifactKind: ActiveRollout] = [:]
    /// The stage runner's active versions and what each slot was given.
    var stages = StageRunnerState()
    /// Pool totals once a second (baselines of last stages).
    var poolSnapshots: [String: [PoolSnapshot]] = [:]
    /// Per pool, (time, requests, errors) totals once a second, for the status page.
    var pageHistory: [String: [(at: Double, requests: Int, errors: Int)]] = [:]
    /// Ticks since start (stages are reported every tenth).
    var ticks = 0
    /// The host's own protection of the slots running a rollout's new version: it
    /// acts on what this host observes, without the rollout's driver.
    var localGuard = LocalGuard()

    /// Script versions each worker confirmed loaded (`customer/name@version`), by pid.
    var loadedScripts: [pid_t: Set<String>] = [:]

    /// The ingress, when configured.
    var ingress: IngressState?
    /// The control process, when configured.
    var control: ControlState?
    /// Customers moving between pools, by customer.
    var pendingMoves: [String: PendingMove] = [:]

    /// The host's `/metrics` and `/healthz` address once it listens.
    var metricsAddress: String?

    /// What each pool served since start (for `/metrics`).
    var totals: [String: PoolTotals] = [:]
    var timer: DispatchSourceTimer?
    let stopped = DispatchSemaphore(value: 0)

    /// Creates a supervisor; nothing starts until `start()`.
    public init(configuration: SupervisorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        // Unique across supervisor restarts, so socket paths never collide.
        nextInstance = UInt64(Date().timeIntervalSince1970 * 1000) << 8
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
        queue.sync { catalog = loadCatalog() }

        let adopted = adoptLiveWorkers()
        try queue.sync {
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
            for (pool, workers) in adopted where pools[pool] == nil {
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
        // No signal handler of its own: SIGTERM belongs to the process's ServiceGroup,
        // which lets API requests in flight finish and only then calls `stop()`. A
        // drain started by the signal itself would pull the workers from under those
        // requests (a `cohort move` warming its scripts) and end the group early.
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
        pools[cohort.name] = pool
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
            lockFD = try PidLock.take(configuration.data.lockFile).descriptor
        } catch let held as PidLock.Held {
            throw SupervisorStartError(
                description: "another supervisor (pid \(held.holder)) holds \(configuration.data.root); stop it or use another --data")
        } catch {
            throw SupervisorStartError(description: "\(error)")
        }
    }

    func releaseLock() {
        if lockFD >= 0 {
            close(lockFD)
            lockFD = -1
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
            self.ticks += 1
            if self.ticks % 10 == 0 { self.runStages() }
        }
        timer.resume()
        self.timer = timer
    }

    func beginShutdown() {
        guard !shuttingDown else { return }
        shuttingDown = true
        stopIngress()
        stopControl()
        for pool in pools.values {
            pool.restartDue.removeAll()
            for worker in pool.allWorkers {
                worker.draining = true
                worker.send(.drain)
            }
        }
        // Workers finish in-flight requests within their wall deadline; past this
        // they are killed so a stop always ends.
        let longestWall = pools.values.map(\.cohort.limits.wallMilliseconds).max() ?? 1000
        let deadline = Self.now() + Double(longestWall) / 1000 + 5
        checkShutdown(deadline: deadline)
    }

    private func checkShutdown(deadline: Double) {
        let remaining = pools.values.flatMap(\.allWorkers)
        let helpers = [ingress?.process, control?.process].compactMap { $0 }
        let helpersRunning = helpers.map { $0.stillRunningChild() }.contains(true)
        if (remaining.isEmpty && !helpersRunning) || Self.now() > deadline {
            for helper in helpers where helper.stillRunningChild() { helper.signal(SIGKILL) }
            reapControl()
            if ingress != nil { unlink(ingressPidFile) }
            for worker in remaining {
                logger.warning("worker did not drain in time; killing it", metadata: ["pid": "\(worker.pid)"])
                kill(worker.pid, SIGKILL)
            }
            reapChildren()
            for pool in pools.values { close(pool.listenFD) }
            timer?.cancel()
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
        if catalog.assignments != before.assignments {
            for pool in pools.values {
                for worker in pool.allWorkers { worker.send(.customers(assignments: catalog.assignments)) }
            }
        }
        for (customer, scripts) in catalog.scripts {
            guard let cohort = catalog.assignments[customer], let pool = pools[cohort] else { continue }
            let moved = before.assignments[customer] != cohort
            for (name, spec) in scripts where moved || before.scripts[customer]?[name] != spec {
                let key = "\(customer)/\(name)"
                strikes[key] = nil
                logger.info("script version published", metadata: ["script": "\(key)", "version": "\(spec.version)", "pool": "\(cohort)"])
                for worker in pool.allWorkers { worker.send(.putScript(spec)) }
                feed.scriptsPushed += pool.allWorkers.count
            }
        }
        // Scripts deleted, or customers moved away: their old pool unloads them.
        for (customer, scripts) in before.scripts {
            guard let cohort = before.assignments[customer], let pool = pools[cohort] else { continue }
            for name in scripts.keys {
                let stillHere = catalog.scripts[customer]?[name] != nil && catalog.assignments[customer] == cohort
                if !stillHere {
                    for worker in pool.allWorkers { worker.send(.removeScript(customer: customer, name: name)) }
                    feed.scriptsPushed += pool.allWorkers.count
                }
            }
        }
    }
}
