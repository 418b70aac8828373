#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import CBulkheadPosix
import Dispatch
import Foundation
import LuaSandbox
import Synchronization

/// The command line of a worker process (see `WorkerSpawner` for the contract).
public struct WorkerOptions: Sendable {
    /// The pool it serves.
    public var pool: String
    /// Its slot.
    public var slot: Int
    /// Unique instance number (part of its socket path).
    public var instance: UInt64
    /// The data directory.
    public var data: DataDirectory
    /// The inherited listening TCP socket.
    public var listenFD: Int32 = 3
    /// The inherited control listener.
    public var controlFD: Int32 = 4
    /// The binary version this worker runs as (0: the supervisor's own build).
    public var binaryVersion: Int = 0
    /// Margin past a request's wall deadline before the watchdog ends the process, ms.
    public var watchdogMarginMilliseconds: Int = 500

    /// Creates options.
    public init(pool: String, slot: Int, instance: UInt64, data: DataDirectory) {
        self.pool = pool
        self.slot = slot
        self.instance = instance
        self.data = data
    }
}

/// A worker: serves one pool from the inherited listening socket on one event
/// loop thread, takes orders from whichever supervisor is connected, and keeps
/// serving what it has when no supervisor is (fail static).
public final class WorkerProcess: @unchecked Sendable {
    /// Exit status when the watchdog ended the process.
    public static let watchdogExitStatus: Int32 = 70

    let options: WorkerOptions
    let loop: WorkerLoop
    let control = ControlLink()
    let startedAt = Date().timeIntervalSince1970
    /// The context, created on and confined to the loop.
    private let context: LoopBound<PoolContext>
    private let identityState = Mutex((versions: ArtifactVersions(), draining: false))
    private let exitCode = Mutex<Int32?>(nil)
    private let finished = DispatchSemaphore(value: 0)
    private var acceptor: Acceptor?

    /// Sets the worker up; nothing is served until the supervisor says `start`.
    public init(options: WorkerOptions) throws {
        self.options = options
        self.loop = try WorkerLoop()
        loop.start(name: "loop")
        let control = self.control
        let pool = options.pool
        let watchdog = Watchdog(margin: .milliseconds(options.watchdogMarginMilliseconds)) { chunkName, elapsed in
            // Runs on the watchdog's thread while the loop is stuck in a C call:
            // tell the supervisor which script did it, then end the process.
            let (customer, script) = Self.split(chunkName: chunkName)
            control.send(.watchdog(customer: customer, script: script,
                                   elapsedMilliseconds: Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)))
            usleep(50_000)
            let line = "worker \(getpid()) of pool \(pool): watchdog: \(chunkName) overran its wall deadline; exiting\n"
            FileHandle.standardError.write(Data(line.utf8))
            _exit(WorkerProcess.watchdogExitStatus)
        }
        let loop = self.loop
        let binaryVersion = options.binaryVersion
        if let limit = ProcessInfo.processInfo.environment["BULKHEAD_FAULT_NESTED_CLOSES"].flatMap({ Int($0) }) {
            SandboxLimits.setNestedCloseLimit(limit)
        }
        if bh_crash_notes_install(options.data.crashNote(pid: getpid())) != 0 {
            FileHandle.standardError.write(Data("worker \(getpid()): cannot install crash notes (errno \(errno)); crashes will not be blamed on scripts\n".utf8))
        }
        self.context = loop.submit {
            // The loop runs the scripts: a crash there by stack overflow needs a
            // stack of its own to write its note.
            _ = bh_crash_notes_thread()
            let context = PoolContext(pool: pool, pid: getpid(), control: control, watchdog: watchdog)
            context.stats.versions.binary = binaryVersion
            return LoopBound(context, loop: loop)
        }
        identityState.withLock { $0.versions.binary = binaryVersion }
    }

    /// Serves until drained; returns the exit status.
    public func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        writePidFile()
        startControlServer()
        startHeartbeat()
        let termSource = startTermWatcher()
        finished.wait()
        withExtendedLifetime(termSource) {}
        removePidFile()
        return exitCode.withLock { $0 } ?? 0
    }

    /// SIGTERM drains the worker. The signal writes to a pipe that a thread of its
    /// own reads: a Dispatch signal source would be woken by every tick of the
    /// instruction budget (see `bh_signal_pipe`).
    /// - Returns: the Dispatch source when the pipe could not be made, for the
    ///   caller to keep alive.
    private func startTermWatcher() -> (any DispatchSourceSignal)? {
        let fd = bh_signal_pipe(SIGTERM)
        guard fd >= 0 else {
            // Correct but slower: the Dispatch source.
            FileHandle.standardError.write(Data("worker \(getpid()): SIGTERM pipe: \(String(cString: strerror(errno))); using a Dispatch source\n".utf8))
            let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
            signal(SIGTERM, SIG_IGN)
            term.setEventHandler { [self] in loop.execute { self.drain() } }
            term.resume()
            return term
        }
        let thread = Thread { [self] in
            var byte: UInt8 = 0
            while true {
                let count = read(fd, &byte, 1)
                if count == 1 {
                    loop.execute { self.drain() }
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
        thread.name = "sigterm"
        thread.start()
        return nil
    }

    // MARK: - Control channel

    private var pidFile: String {
        options.data.run + "/worker-\(options.pool)-\(options.slot)-\(options.instance).pid"
    }

    private var socketPath: String {
        options.data.workerSocket(pool: options.pool, slot: options.slot, instance: options.instance)
    }

    private func writePidFile() {
        _ = FileManager.default.createFile(atPath: pidFile, contents: Data("\(getpid())\n".utf8), attributes: [.posixPermissions: 0o600])
    }

    private func removePidFile() {
        unlink(pidFile)
        unlink(socketPath)
    }

    /// Accepts supervisor connections one after the other: a new one (a supervisor
    /// that took over) replaces the old.
    private func startControlServer() {
        let thread = Thread { [self] in
            // A supervisor that takes over must always get in: no error ends this loop.
            var retry = AcceptRetry(listener: "the control socket")
            let log: (String) -> Void = { line in
                FileHandle.standardError.write(Data("worker \(getpid()): \(line)\n".utf8))
            }
            while let fd = Sockets.acceptRetrying(options.controlFD, retry: &retry, log: log, stopped: { false }) {
                let connection = FrameConnection(fd: fd)
                guard handshake(connection) else {
                    connection.close()
                    continue
                }
                control.replace(with: connection)
                connection.start(
                    name: "control",
                    onFrame: { [self] bytes in
                        guard let message = ControlCodec.decode(SupervisorMessage.self, from: bytes) else {
                            FileHandle.standardError.write(Data("worker \(getpid()): malformed control frame dropped\n".utf8))
                            return
                        }
                        loop.execute { self.apply(message) }
                    },
                    onClose: { [self] in control.clear(connection) })
            }
        }
        thread.name = "control-accept"
        thread.start()
    }

    /// The worker's side of the handshake: answer hello with who we are, and hand
    /// over the pool's listening socket when asked.
    private func handshake(_ connection: FrameConnection) -> Bool {
        Sockets.setTimeouts(connection.fd, seconds: 5)
        guard let frame = try? connection.readFrameNow(),
              case .hello(let version, let supervisorPID, let wantListener) = ControlCodec.decode(SupervisorMessage.self, from: frame)
        else { return false }
        // Both sides check the version: a supervisor of another protocol gets no
        // identity and no listening socket.
        guard version == controlProtocolVersion else {
            FileHandle.standardError.write(Data(
                "worker \(getpid()): refused supervisor \(supervisorPID), which speaks control protocol \(version), not \(controlProtocolVersion)\n".utf8))
            return false
        }
        let state = identityState.withLock { $0 }
        let identity = WorkerIdentity(
            pid: getpid(), pool: options.pool, slot: options.slot, instance: options.instance,
            versions: state.versions, startedAt: startedAt, draining: state.draining)
        do {
            try connection.writeFrameNow(ControlCodec.encode(WorkerMessage.hello(identity)))
            if wantListener { try Sockets.sendDescriptor(options.listenFD, over: connection.fd) }
        } catch {
            return false
        }
        Sockets.setTimeouts(connection.fd, seconds: 0)
        return true
    }

    // MARK: - Orders (on the loop)

    private func apply(_ message: SupervisorMessage) {
        let pool = context.value
        switch message {
        case .hello:
            break
        case .configure(let cohort):
            pool.configure(cohort)
        case .customers(let assignments):
            pool.registry.setAssignments(assignments)
        case .putScript(let spec):
            load(spec, into: pool)
        case .removeScript(let customer, let name):
            if let removed = pool.registry.remove(customer: customer, name: name) {
                _ = removed  // released here; closing a state runs under the watchdog
            }
        case .quarantine(let customer, let name, let quarantined):
            pool.registry.setQuarantine(customer: customer, name: name, quarantined: quarantined)
        case .setArtifact(let kind, let version, let content):
            setArtifact(kind, version: version, content: content, pool: pool)
        case .start:
            startServing()
        case .drain:
            drain()
        }
    }

    /// Loads a script version beside the current one; the current one keeps serving
    /// until the new one is ready, and stays if the new one fails. With a split, the
    /// candidate is loaded beside the active version (once per deployment: a new
    /// share only moves the cut), and a candidate that becomes the active version
    /// keeps its state.
    private func load(_ spec: ScriptSpec, into pool: PoolContext) {
        guard let cohort = pool.registry.cohort else { return }
        let current = pool.registry.get(customer: spec.customer, name: spec.name)
        let active: LoadedScript
        if let current, current.version == spec.version {
            active = current
        } else if let current, let candidate = current.split?.candidate, candidate.version == spec.version {
            // Promoted: the candidate's state serves as the active version from now.
            active = LoadedScript(customer: spec.customer, name: spec.name, version: spec.version, state: candidate.state)
            pool.registry.install(active)
        } else {
            do {
                active = LoadedScript(
                    customer: spec.customer, name: spec.name, version: spec.version,
                    state: try loadState(customer: spec.customer, name: spec.name, source: spec.source, cohort: cohort, pool: pool))
                pool.registry.install(active)
            } catch {
                control.send(.scriptFailed(customer: spec.customer, name: spec.name, version: spec.version,
                                           kind: error.kind.rawValue, message: error.message))
                return
            }
        }
        applySplit(spec.split, to: active, cohort: cohort, pool: pool)
        control.send(.scriptLoaded(customer: spec.customer, name: spec.name, version: spec.version))
    }

    /// Puts `split` on the active version (nil: takes any split off it). A candidate
    /// that fails to load leaves every request on the active version, and says so.
    private func applySplit(_ split: ScriptSplit?, to active: LoadedScript, cohort: CohortConfiguration, pool: PoolContext) {
        guard let split, split.version != active.version else {
            active.split = nil
            active.versionCounts = nil
            return
        }
        if let loaded = active.split, loaded.config.deployment == split.deployment, loaded.candidate.version == split.version {
            active.split = LoadedSplit(config: split, candidate: loaded.candidate)
            return
        }
        do {
            let candidate = LoadedScript(
                customer: active.customer, name: active.name, version: split.version,
                state: try loadState(customer: active.customer, name: active.name, source: split.source, cohort: cohort, pool: pool))
            candidate.versionCounts = ScriptVersionCounts()
            active.versionCounts = ScriptVersionCounts()
            active.split = LoadedSplit(config: split, candidate: candidate)
        } catch {
            active.split = nil
            active.versionCounts = nil
            control.send(.scriptFailed(customer: active.customer, name: active.name, version: split.version,
                                       kind: error.kind.rawValue, message: error.message))
        }
    }

    /// A new state of a customer's script under the cohort's limits.
    private func loadState(
        customer: String, name: String, source: String, cohort: CohortConfiguration, pool: PoolContext
    ) throws(ScriptError) -> LuaScript {
        let control = self.control
        return try LuaScript(
            chunkName: "\(customer)/\(name).lua", source: Array(source.utf8),
            limits: ScriptRegistry.sandboxLimits(cohort.limits), watchdog: pool.watchdog,
            log: { line in control.send(.log(customer: customer, script: name, line: line), droppable: true) })
    }

    /// Loads a runtime, rules or policy version beside the current one; on any
    /// failure the worker keeps its last known good version, counts a platform error
    /// and says so.
    private func setArtifact(_ kind: ArtifactKind, version: Int, content: String, pool: PoolContext) {
        installDefaultPlatform()
        let current = pool.stats.versions[kind]
        if current == version && pool.platform != nil {
            control.send(.artifactLoaded(kind: kind, version: version))
            return
        }
        do {
            switch kind {
            case .runtime:
                let runtime = try PlatformRuntime(
                    source: Array(content.utf8), watchdog: pool.watchdog,
                    log: { [control] line in control.send(.log(customer: "_platform", script: "runtime", line: line), droppable: true) })
                try runtime.loadRules(pool.rulesJSON, validatedBy: Self.validateRules)
                // What was counted so far belongs to the runtime going out.
                pool.ledger.close(pool.stats)
                pool.platform = runtime
                pool.stats.versions.runtime = version
            case .rules:
                let rules = Array(content.utf8)
                guard let platform = pool.platform else { return }
                try platform.loadRules(rules, validatedBy: Self.validateRules)
                pool.ledger.close(pool.stats)
                pool.rulesJSON = rules
                pool.stats.versions.rules = version
            case .policy:
                pool.setPolicy(try Self.policy(version: version, content: content, pool: options.pool))
                pool.stats.versions.policy = version
            case .binary:
                return
            }
            identityState.withLock { $0.versions = pool.stats.versions }
            control.send(.artifactLoaded(kind: kind, version: version))
        } catch {
            let message = "\(kind) version \(version) refused, keeping version \(current): \(error)"
            // The failure is the refused version's, not the one that keeps serving:
            // a gate judging the refused version must see it.
            let refused = switch kind {
            case .runtime: (runtime: version, rules: pool.stats.versions.rules)
            case .rules: (runtime: pool.stats.versions.runtime, rules: version)
            case .binary, .policy: (runtime: pool.stats.versions.runtime, rules: pool.stats.versions.rules)
            }
            pool.ledger.close(pool.stats)
            pool.stats.countPlatformError(ErrorSignature.normalize("artifact \(kind): \(error)"))
            pool.ledger.close(pool.stats, chargingTo: refused)
            FileHandle.standardError.write(Data("worker \(getpid()) of pool \(options.pool): \(message)\n".utf8))
            control.send(.artifactFailed(kind: kind, version: version, message: message))
        }
    }

    /// A policy version's content as this worker's pool runs it: nil for version 0
    /// (the cohort file's own); refused when it does not parse or names another cohort.
    static func policy(version: Int, content: String, pool: String) throws -> CohortPolicy? {
        guard version > 0 else { return nil }
        let policy = try CohortPolicy.parse(content)
        guard policy.cohort == pool else {
            throw PolicyMismatch(description: "the policy is cohort '\(policy.cohort)'s, and this worker serves '\(pool)'")
        }
        return policy
    }

    /// A policy shipped to a pool it does not name.
    struct PolicyMismatch: Error, CustomStringConvertible {
        var description: String
    }

    /// The consumer's own check of a rules artifact (the producer checked it too).
    static func validateRules(_ bytes: [UInt8]) -> String? {
        switch RulesValidator.validate(bytes) {
        case .success: nil
        case .failure(let error): "\(error)"
        }
    }

    /// Installs the built-in runtime (version 0) with no rules, so the platform
    /// layer is in the path from the first request.
    func installDefaultPlatform() {
        let pool = context.value
        guard pool.platform == nil else { return }
        do {
            let runtime = try PlatformRuntime(source: DefaultRuntime.source, watchdog: pool.watchdog)
            try runtime.loadRules(pool.rulesJSON)
            pool.platform = runtime
        } catch {
            pool.stats.countPlatformError(ErrorSignature.normalize("built-in runtime: \(error)"))
        }
    }

    private func startServing() {
        guard acceptor == nil else { return }
        installDefaultPlatform()
        let context = self.context
        let loop = self.loop
        let balance = AcceptBalance(path: options.data.acceptBalance(pool: options.pool), slot: options.slot)
        context.value.balance = balance
        // The responses of a turn go out at its end (see HTTPConnection).
        loop.endOfTurn = { [context] in
            context.value.flushWrites()
            balance?.willWait()
        }
        if let balance {
            loop.startOfTurn = { balance.turnStarted(at: $0) }
        }
        let acceptor = Acceptor(listenFD: options.listenFD, balance: balance)
        self.acceptor = acceptor
        acceptor.start(on: loop) { fd in
            Self.serve(fd, pool: context.value, loop: loop)
        }
        loop.scheduleRepeated(every: 1_000_000_000) {
            let now = loop.now
            for connection in Array(context.value.connections.values) { connection.checkTimeouts(now: now) }
        }
        control.send(.ready)
        // Fault injection for tests of binary rollouts: a build that dies a while
        // after it started serving, whatever share of the traffic it got.
        if let milliseconds = ProcessInfo.processInfo.environment["BULKHEAD_FAULT_CRASH_AFTER_MS"].flatMap({ UInt64($0) }) {
            loop.schedule(in: milliseconds * 1_000_000) { abort() }
        }
    }

    /// Takes a new client connection (on the loop).
    ///
    /// One accepted while the worker drains (the acceptor can be inside `accept`
    /// for up to its timeout after the drain began) is served too: its first answer
    /// says `connection: close`. Closing it at once would reset a request the
    /// client has already sent.
    private static func serve(_ fd: Int32, pool: PoolContext, loop: WorkerLoop) {
        guard bh_prepare_connection(fd) == 0 else {
            close(fd)
            return
        }
        let connection = HTTPConnection(fd: fd, pool: pool, loop: loop)
        do {
            try loop.watch(fd, events: BH_EVENT_READ, handler: connection)
        } catch {
            close(fd)
            return
        }
        pool.connections[fd] = connection
    }

    private func startHeartbeat() {
        let context = self.context
        let control = self.control
        loop.execute { [loop] in
            loop.scheduleRepeated(every: 200_000_000) {
                control.send(.heartbeat(context.value.heartbeatStats()), droppable: true)
            }
        }
    }

    // MARK: - Drain and exit

    /// Stops accepting, lets in-flight requests finish, closes idle keep-alive
    /// connections, and exits when none is left.
    private func drain() {
        let pool = context.value
        guard !pool.draining else { return }
        pool.draining = true
        pool.balance?.stopAccepting()
        identityState.withLock { $0.draining = true }
        let acceptor = self.acceptor
        let context = self.context
        // Not before the acceptor has stopped: a connection it accepted meanwhile
        // is on its way to the loop, and exiting would reset it.
        pool.acceptorRunning = acceptor != nil
        let finishIfIdle: @Sendable () -> Void = { [self] in
            let pool = context.value
            if !pool.acceptorRunning && pool.openConnections == 0 { finish(status: 0) }
        }
        pool.onConnectionClosed = finishIfIdle
        for connection in Array(pool.connections.values) { connection.closeWhenIdle() }
        if let acceptor {
            // Stopping takes up to the accept timeout: off the loop. Every
            // connection it accepted has reached the loop when it returns.
            DispatchQueue.global().async { [loop] in
                acceptor.stop()
                loop.execute {
                    context.value.acceptorRunning = false
                    finishIfIdle()
                }
            }
        } else {
            finishIfIdle()
        }
        // Past the longest a request may run, stop regardless.
        let limit = Int64(pool.registry.cohort?.limits.wallMilliseconds ?? 1000) + 2000
        loop.schedule(in: UInt64(limit) * 1_000_000) { [self] in finish(status: 0) }
    }

    private func finish(status: Int32) {
        let first = exitCode.withLock { code -> Bool in
            guard code == nil else { return false }
            code = status
            return true
        }
        if first { finished.signal() }
    }

    private static func split(chunkName: String) -> (String, String) {
        var name = chunkName
        if name.hasSuffix(".lua") { name.removeLast(4) }
        let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
        return parts.count == 2 ? (parts[0], parts[1]) : ("", name)
    }
}
