#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Dispatch
import Foundation
import Store

extension WorkerHandle: @unchecked Sendable {}  // confined to the supervisor queue

/// A live worker found on start, with the listening socket it gave back.
struct AdoptedWorker {
    let handle: WorkerHandle
    let connection: FrameConnection
    let listenFD: Int32
}

extension Supervisor {
    // MARK: - Handshake

    /// The supervisor's side of the handshake, blocking (call off the queue).
    static func handshake(_ connection: FrameConnection, wantListener: Bool) throws -> (WorkerIdentity, Int32?) {
        Sockets.setTimeouts(connection.fd, seconds: 5)
        try connection.writeFrameNow(ControlCodec.encode(
            SupervisorMessage.hello(protocolVersion: controlProtocolVersion, supervisorPID: getpid(), wantListener: wantListener)))
        let frame = try connection.readFrameNow()
        guard case .hello(let identity) = ControlCodec.decode(WorkerMessage.self, from: frame) else {
            throw SystemError("worker handshake: unexpected answer", code: EPROTO)
        }
        guard identity.protocolVersion == controlProtocolVersion else {
            throw SystemError("worker \(identity.pid) speaks control protocol \(identity.protocolVersion), not \(controlProtocolVersion)", code: EPROTO)
        }
        var listenFD: Int32?
        if wantListener { listenFD = try Sockets.receiveDescriptor(over: connection.fd) }
        Sockets.setTimeouts(connection.fd, seconds: 0)
        return (identity, listenFD)
    }

    // MARK: - Takeover

    /// Connects to every worker socket under `run/`, adopts the workers that answer
    /// the handshake, and takes back their pools' listening sockets.
    func adoptLiveWorkers() -> [String: [AdoptedWorker]] {
        var adopted: [String: [AdoptedWorker]] = [:]
        let run = configuration.data.run
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
        for entry in entries.sorted() where entry.hasPrefix("worker-") && entry.hasSuffix(".sock") {
            let path = run + "/" + entry
            guard let fd = try? Sockets.connectUnix(path: path) else {
                // Nobody listens: the worker is gone.
                unlink(path)
                continue
            }
            let connection = FrameConnection(fd: fd)
            do {
                let (identity, listenFD) = try Self.handshake(connection, wantListener: true)
                guard let listenFD else { continue }
                let handle = WorkerHandle(
                    pid: identity.pid, pool: identity.pool, slot: identity.slot, instance: identity.instance,
                    isChild: false, now: Self.now())
                handle.ready = true
                handle.draining = identity.draining
                adopted[identity.pool, default: []].append(AdoptedWorker(handle: handle, connection: connection, listenFD: listenFD))
            } catch {
                logger.warning("cannot adopt worker; it will not be used", metadata: ["socket": "\(path)", "error": "\(error)"])
                connection.close()
            }
        }
        return adopted
    }

    // MARK: - Spawning

    func spawnWorker(pool: PoolState, slot: Int) {
        pool.restartDue[slot] = nil
        table.nextInstance += 1
        let instance = table.nextInstance
        let data = configuration.data
        let path = data.workerSocket(pool: pool.cohort.name, slot: slot, instance: instance)
        let pid: pid_t
        do {
            let controlFD = WorkerSpawner.highDescriptor(try Sockets.listenUnix(path: path))
            defer { close(controlFD) }
            // The slot's binary: a binary rollout runs another build in some slots.
            let binaryVersion = usableBinaryVersion(pool: pool.cohort.name, slot: slot)
            stageRunner.stages.given[SlotArtifact(kind: .binary, pool: pool.cohort.name, slot: slot)] = binaryVersion
            let executable = binaryVersion == 0
                ? configuration.workerExecutable
                : artifactContent(.binary, version: binaryVersion).map { BinaryArtifact(content: $0).path } ?? configuration.workerExecutable
            pid = try WorkerSpawner.spawn(.init(
                executable: executable, pool: pool.cohort.name, slot: slot, instance: instance,
                data: data, listenFD: pool.listenFD, controlFD: controlFD,
                environment: configuration.workerEnvironment + ["BULKHEAD_WORKER_BINARY_VERSION=\(binaryVersion)"]))
        } catch {
            unlink(path)
            logger.error("cannot start worker", metadata: ["pool": "\(pool.cohort.name)", "slot": "\(slot)", "error": "\(error)"])
            scheduleRestart(pool: pool, slot: slot)
            return
        }
        let handle = WorkerHandle(pid: pid, pool: pool.cohort.name, slot: slot, instance: instance, isChild: true, now: Self.now())
        pool.slots[slot] = handle
        table.children[pid] = handle
        logger.debug("worker started", metadata: ["pool": "\(pool.cohort.name)", "slot": "\(slot)", "pid": "\(pid)"])
        // The control listener already exists, so this connect succeeds at once and
        // the handshake completes as soon as the worker runs.
        DispatchQueue.global().async { [self] in
            do {
                let connection = FrameConnection(fd: try Sockets.connectUnix(path: path))
                _ = try Self.handshake(connection, wantListener: false)
                queue.async {
                    guard !handle.exited else { return connection.close() }
                    self.attach(handle, connection: connection)
                }
            } catch {
                queue.async {
                    self.logger.warning("worker failed its handshake", metadata: ["pid": "\(pid)", "error": "\(error)"])
                    kill(pid, SIGKILL)
                }
            }
        }
    }

    /// Starts listening to a worker and sends it everything its pool needs.
    func attach(_ handle: WorkerHandle, connection: FrameConnection) {
        handle.connection = connection
        handle.lastHeartbeat = Self.now()
        connection.start(
            name: "worker-\(handle.pid)",
            onFrame: { [weak self] bytes in
                guard let self else { return }
                guard let message = ControlCodec.decode(WorkerMessage.self, from: bytes) else {
                    self.queue.async {
                        self.logger.error("malformed control frame from worker; replacing it", metadata: ["pid": "\(handle.pid)"])
                        handle.killReason = "malformed control frame"
                        kill(handle.pid, SIGKILL)
                    }
                    return
                }
                self.queue.async { self.received(message, from: handle) }
            },
            onClose: { [weak self] in
                guard let self else { return }
                let violation = connection.protocolViolation
                self.queue.async {
                    if let violation, !handle.exited {
                        // The worker broke the framing: it is out of sync, and left alive
                        // it would go on serving with nobody supervising it.
                        self.logger.error("broken control frame from worker; replacing it", metadata: [
                            "pid": "\(handle.pid)", "error": "\(violation)",
                        ])
                        handle.killReason = "broken control frame: \(violation)"
                        kill(handle.pid, SIGKILL)
                    }
                    self.workerGone(handle, reason: "control connection closed")
                }
            })
        guard let pool = table.pools[handle.pool] else { return }
        handle.send(.configure(cohort: pool.cohort))
        sendArtifacts(to: handle)
        handle.send(.customers(assignments: replicaFeed.catalog.assignments))
        for spec in replicaFeed.catalog.scripts(forCohort: pool.cohort.name) {
            handle.send(.putScript(spec))
            if table.quarantined.contains("\(spec.customer)/\(spec.name)") {
                handle.send(.quarantine(customer: spec.customer, name: spec.name, quarantined: true))
            }
        }
        if handle.draining {
            handle.send(.drain)
        } else {
            handle.send(.start)
        }
    }

    // MARK: - Messages

    func received(_ message: WorkerMessage, from handle: WorkerHandle) {
        switch message {
        case .hello:
            break
        case .ready:
            if let pool = table.pools[handle.pool], let old = pool.awaitingReplacement[handle.slot], old !== handle {
                // The replacement serves: the worker it replaces may drain now.
                pool.awaitingReplacement[handle.slot] = nil
                old.send(.drain)
            }
            if !handle.ready {
                handle.ready = true
                let milliseconds = Int((Self.now() - handle.startedAt) * 1000)
                logger.info("worker ready", metadata: [
                    "pool": "\(handle.pool)", "slot": "\(handle.slot)", "pid": "\(handle.pid)", "startup_ms": "\(milliseconds)",
                ])
            }
        case .heartbeat(var stats):
            handle.lastHeartbeat = Self.now()
            if stats.byVersion == nil {
                // A worker of an older build sends no per-version counts: split its
                // counters here, between heartbeats (nil before the first one).
                let previous = handle.stats.byVersion == nil ? nil : handle.stats
                stats.byVersion = VersionCounts.attributed(handle.stats.byVersion ?? [], previous: previous, current: stats)
            }
            table.totals[handle.pool, default: PoolTotals()].add(from: handle.stats, to: stats)
            handle.stats = stats
        case .log(let customer, let script, let line):
            appendLog(customer: customer, script: script, line: line)
        case .scriptLoaded(let customer, let name, let version):
            table.loadedScripts[handle.pid, default: []].insert("\(customer)/\(name)@\(version)")
            handle.lastLoadedScript = "\(customer)/\(name)@\(version)"
            logger.debug("script loaded", metadata: ["script": "\(customer)/\(name)", "version": "\(version)", "pid": "\(handle.pid)"])
        case .scriptFailed(let customer, let name, let version, let kind, let message):
            logger.warning("worker kept the previous version of a script it could not load", metadata: [
                "script": "\(customer)/\(name)", "version": "\(version)", "kind": "\(kind)", "error": "\(message)",
                "pid": "\(handle.pid)",
            ])
            appendLog(customer: customer, script: name, line: "version \(version) failed to load: \(kind): \(message)")
        case .artifactLoaded(let kind, let version):
            logger.debug("artifact loaded", metadata: ["kind": "\(kind)", "version": "\(version)", "pid": "\(handle.pid)"])
        case .artifactFailed(let kind, let version, let message):
            logger.error("worker refused an artifact and keeps its last known good one", metadata: [
                "kind": "\(kind)", "version": "\(version)", "pid": "\(handle.pid)", "error": "\(message)",
            ])
        case .watchdog(let customer, let script, let elapsed):
            // Only a customer's script is blamed: the platform runtime's chunk names
            // no customer, and its overrun is the platform's (a crash the gate counts).
            guard ResourceName.isValid(customer), ResourceName.isValid(script) else {
                logger.error("the platform overran its wall deadline; the worker was ended", metadata: [
                    "chunk": "\(script)", "elapsed_ms": "\(elapsed)", "pid": "\(handle.pid)",
                ])
                return
            }
            handle.blamedScript = "\(customer)/\(script)"
            strike(customer: customer, script: script, pid: handle.pid,
                   event: "request ran \(elapsed) ms past its deadline; the worker was ended",
                   reason: "overrunning its wall deadline")
        }
    }

    func appendLog(customer: String, script: String, line: String) {
        let key = "\(customer)/\(script)"
        var lines = table.scriptLogs[key] ?? []
        lines.append(line)
        if lines.count > Self.logLinesPerScript { lines.removeFirst(lines.count - Self.logLinesPerScript) }
        table.scriptLogs[key] = lines
    }

    /// A script ended a worker (the watchdog ended it, or it crashed inside one of
    /// the script's calls): count it, and quarantine the script after repeated
    /// kills so it stops taking workers down. `event` says what happened, `reason`
    /// how the script ended workers (for the quarantine).
    func strike(customer: String, script: String, pid: pid_t, event: String, reason: String) {
        let key = "\(customer)/\(script)"
        table.strikes[key, default: 0] += 1
        let count = table.strikes[key] ?? 0
        logger.warning("a script ended a worker", metadata: [
            "script": "\(key)", "event": "\(event)", "pid": "\(pid)", "strikes": "\(count)",
        ])
        appendLog(customer: customer, script: script, line: "\(event) (strike \(count) of \(strikesToQuarantine))")
        guard count >= strikesToQuarantine, !table.quarantined.contains(key) else { return }
        table.quarantined.insert(key)
        do {
            // In the replica, with the version that ended the workers: a new version
            // through the feed lifts it.
            let version = replicaFeed.catalog.scripts[customer]?[script]?.version ?? 0
            try replica.setQuarantine(
                ScriptAddress(customer: customer, name: script), version: version,
                reason: "ended \(count) workers by \(reason)", actor: "watchdog")
        } catch {
            logger.error("cannot record the quarantine in the replica", metadata: ["script": "\(key)", "error": "\(error)"])
        }
        logger.error("script quarantined after repeated worker kills", metadata: ["script": "\(key)", "strikes": "\(count)"])
        appendLog(customer: customer, script: script, line: "quarantined after \(count) worker kills; upload a new version or unquarantine it")
        if let cohort = replicaFeed.catalog.assignments[customer], let pool = table.pools[cohort] {
            for worker in pool.allWorkers { worker.send(.quarantine(customer: customer, name: script, quarantined: true)) }
        }
    }

    /// Releases a quarantined script. Returns false when it was not quarantined.
    func unquarantine(customer: String, script: String) -> Bool {
        let key = "\(customer)/\(script)"
        table.strikes[key] = nil
        guard table.quarantined.remove(key) != nil else { return false }
        do {
            try replica.setQuarantine(
                ScriptAddress(customer: customer, name: script), version: replicaFeed.catalog.scripts[customer]?[script]?.version ?? 0,
                reason: nil, actor: "operator")
        } catch {
            logger.error("cannot record the release in the replica", metadata: ["script": "\(key)", "error": "\(error)"])
        }
        if let cohort = replicaFeed.catalog.assignments[customer], let pool = table.pools[cohort] {
            for worker in pool.allWorkers { worker.send(.quarantine(customer: customer, name: script, quarantined: false)) }
        }
        logger.info("script released from quarantine", metadata: ["script": "\(key)"])
        return true
    }

    // MARK: - Exits and restarts

    /// A worker is gone (connection closed or process reaped): replace it.
    func workerGone(_ handle: WorkerHandle, reason: String) {
        guard !handle.exited else { return }
        handle.exited = true
        handle.connection?.close()
        // Its replacement takes the slot: a worker whose channel closed but whose
        // process lives on (it closed the channel itself) must not serve on
        // unsupervised. Only a child not yet reaped: its pid cannot have been reused.
        if !handle.draining, table.children[handle.pid] === handle {
            kill(handle.pid, SIGKILL)
        }
        unlink(configuration.data.workerSocket(pool: handle.pool, slot: handle.slot, instance: handle.instance))
        blameCrash(of: handle, reason: reason)
        guard let pool = table.pools[handle.pool] else { return }
        if let index = pool.leaving.firstIndex(where: { $0 === handle }) {
            pool.leaving.remove(at: index)
            return
        }
        guard pool.slots.indices.contains(handle.slot), pool.slots[handle.slot] === handle else { return }
        pool.slots[handle.slot] = nil
        if agent.shuttingDown || handle.draining { return }
        // A crash inside a rollout stage counts against that stage's gate, unless a
        // customer script was already blamed for it: then the stage's version did
        // not cause it, and failing a good platform change for one customer's
        // script would hold every customer back.
        for rollout in replicaFeed.rollouts.values {
            guard let index = rollout.machine.currentStage else { continue }
            let stage = rollout.machine.stages[index]
            guard stage.pool == handle.pool && stageSlots(rollout.machine, index).contains(handle.slot) else { continue }
            if let script = handle.blamedScript, Self.leavesOutScriptCrashes(rollout.machine.kind) {
                rollout.windowCrashesLeftOut[script, default: 0] += 1
            } else {
                rollout.windowCrashes += 1
            }
        }
        guardCrash(of: handle)
        logger.warning("worker exited; replacing it", metadata: [
            "pool": "\(handle.pool)", "slot": "\(handle.slot)", "pid": "\(handle.pid)",
            "reason": "\(handle.killReason ?? reason)",
        ])
        scheduleRestart(pool: pool, slot: handle.slot)
    }

    /// A worker that crashed inside a script's call left a note naming the script
    /// (see `bh_crash_notes_install`): that counts as a strike against the script.
    func blameCrash(of handle: WorkerHandle, reason: String) {
        let path = configuration.data.crashNote(pid: handle.pid)
        guard let data = FileManager.default.contents(atPath: path) else { return }
        unlink(path)
        let note = String(decoding: data.prefix(512), as: UTF8.self)
        guard let slash = note.firstIndex(of: "/") else { return }
        let customer = String(note[..<slash]), script = String(note[note.index(after: slash)...])
        guard ResourceName.isValid(customer), ResourceName.isValid(script) else { return }
        handle.blamedScript = "\(customer)/\(script)"
        strike(customer: customer, script: script, pid: handle.pid,
               event: "a request crashed the worker (\(handle.killReason ?? reason))",
               reason: "crashing them")
    }

    /// Whether a rollout of `kind` leaves out of its gate the crashes blamed on a
    /// script. Runtime and rules never run inside a script's call (the note is
    /// written only during it; the watchdog names the chunk that overran), so such
    /// a crash is the script's whatever the version. A new binary is the sandbox
    /// that runs the script's call: a crash there may be the build's own bug, so a
    /// binary rollout counts every crash; so does a policy's, whose limits are what
    /// ends a script (a wall deadline made shorter is a watchdog kill "blamed" on it).
    static func leavesOutScriptCrashes(_ kind: ArtifactKind) -> Bool {
        kind.isCountedPerVersion
    }

    func scheduleRestart(pool: PoolState, slot: Int) {
        guard !agent.shuttingDown else { return }
        let now = Self.now()
        table.totals[pool.cohort.name, default: PoolTotals()].restarts += 1
        let decision = pool.policy.workerExited(at: now)
        if decision.becameDegraded {
            logger.error("pool degraded: workers restart too often; backing off", metadata: [
                "pool": "\(pool.cohort.name)", "max_restarts": "\(pool.cohort.restart.maxRestarts)",
                "window_seconds": "\(pool.cohort.restart.windowSeconds)", "backoff_seconds": "\(decision.delay)",
            ])
        }
        if decision.delay == 0 {
            spawnWorker(pool: pool, slot: slot)
        } else {
            pool.restartDue[slot] = now + decision.delay
        }
    }

    /// Every 20 ms: reap children, replace workers that missed heartbeats, start
    /// due restarts, let degraded pools recover.
    func tick(now: Double) {
        reapChildren()
        guard !agent.shuttingDown else { return }
        watchIngress(now: now)
        watchControl(now: now)
        for pool in table.pools.values {
            let timeout = Double(pool.cohort.limits.wallMilliseconds + configuration.watchdogMarginMilliseconds) / 1000 + 1.5
            // Leaving (draining) workers too: one that hangs, or ignores the drain, would
            // otherwise never be ended.
            let watched = pool.slots.compactMap { $0 } + pool.leaving
            for worker in watched where !worker.exited && worker.connection != nil && worker.killReason == nil {
                if now - worker.lastHeartbeat > timeout {
                    worker.killReason = String(format: "no heartbeat for %.1f s (hung or stopped)", now - worker.lastHeartbeat)
                    logger.warning("worker missed its heartbeats; killing it", metadata: [
                        "pool": "\(pool.cohort.name)", "pid": "\(worker.pid)", "reason": "\(worker.killReason ?? "")",
                    ])
                    kill(worker.pid, SIGKILL)
                }
            }
            for (slot, due) in pool.restartDue where due <= now && pool.slots[slot] == nil {
                spawnWorker(pool: pool, slot: slot)
            }
            if pool.policy.tick(at: now) {
                logger.info("pool recovered from degraded", metadata: ["pool": "\(pool.cohort.name)"])
            }
        }
    }

    /// Collects exited children without blocking.
    func reapChildren() {
        for (pid, handle) in table.children {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            guard result == pid || (result < 0 && errno == ECHILD) else { continue }
            table.children[pid] = nil
            let signalled = status & 0x7f
            let reason = signalled != 0 ? "killed by signal \(signalled)" : "exited with status \((status >> 8) & 0xff)"
            workerGone(handle, reason: reason)
        }
    }
}

/// Pools and their workers, on the supervisor's queue.
struct WorkerTable {
    /// The pools, by name.
    var pools: [String: PoolState] = [:]
    /// Workers this supervisor started, by pid, until reaped.
    var children: [pid_t: WorkerHandle] = [:]
    /// The last worker instance number given (socket paths are unique by it).
    var nextInstance: UInt64
    /// Script versions each worker confirmed loaded (`customer/name@version`), by pid.
    var loadedScripts: [pid_t: Set<String>] = [:]
    /// Watchdog kills per script (`customer/name`) since its current version.
    var strikes: [String: Int] = [:]
    /// Scripts quarantined for killing workers (`customer/name`).
    var quarantined: Set<String> = []
    /// The last lines of each script's log (`customer/name`).
    var scriptLogs: [String: [String]] = [:]
    /// What each pool served since start (for `/metrics`).
    var totals: [String: PoolTotals] = [:]
    /// Customers moving between pools, by customer.
    var pendingMoves: [String: PendingMove] = [:]
}
