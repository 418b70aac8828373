#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import CBulkheadPosix
import CLuaSandbox
import Dispatch
import HTTPWire
import LuaSandbox
import Synchronization
import Foundation

/// Everything a worker's connections share: scripts, stats, the encoder. It lives
/// on the worker's single event loop, so the hot path takes no lock at all.
final class PoolContext {
    let pool: String
    let pid: Int32
    let registry = ScriptRegistry()
    var stats = WorkerStats()
    /// Splits `stats` by the artifact versions that made them, at each change.
    var ledger = VersionLedger()
    let encoder: ResponseEncoder
    var parserLimits = HTTPParserLimits()
    var requestCounter: UInt64 = 0
    var draining = false
    /// While draining: the acceptor may still hand over a connection.
    var acceptorRunning = false
    /// The open client connections, by descriptor.
    var connections: [Int32: HTTPConnection] = [:] {
        didSet { balance?.publish(connections: connections.count) }
    }
    /// Where this worker tells its siblings how many connections it holds.
    var balance: AcceptBalance?
    var openConnections: Int { connections.count }
    /// What every read goes into, and every response of a read: a connection
    /// copies out only what must outlive the read.
    let input = IOBuffer(capacity: HTTPConnection.readSize)
    let output = IOBuffer(capacity: PoolContext.outputCapacity)
    /// What the write buffer keeps between reads.
    static let outputCapacity = 256 * 1024
    /// Connections whose responses wait in `output` for the end of the turn.
    private var writeQueue: [HTTPConnection] = []
    /// Past this much waiting output, the writes go out before the turn ends.
    static let earlyFlushBytes = 1 << 20
    /// Scratch space for a request's headers as the sandbox takes them.
    let headerScratch: UnsafeMutableBufferPointer<LuaHeader>
    /// Sends to the supervisor (thread-safe).
    let control: ControlLink
    let watchdog: Watchdog

    init(pool: String, pid: Int32, control: ControlLink, watchdog: Watchdog) {
        self.pool = pool
        self.pid = pid
        self.encoder = ResponseEncoder(pool: pool, pid: pid)
        self.control = control
        self.watchdog = watchdog
        self.headerScratch = .allocate(capacity: HTTPParserLimits().maxHeaderCount)
    }

    deinit {
        headerScratch.deallocate()
    }

    /// The cohort as the supervisor's cohort file gives it (`configure`).
    private var fileCohort: CohortConfiguration?
    /// The cohort policy the slot was given (`setArtifact(.policy)`), nil for
    /// version 0: the cohort file's own.
    var policy: CohortPolicy?

    /// Takes the cohort file's configuration; a policy given keeps its limits over it.
    func configure(_ cohort: CohortConfiguration) {
        fileCohort = cohort
        applyCohort()
    }

    /// Runs under `policy` (nil: the cohort file's limits), when the cohort is known.
    func setPolicy(_ policy: CohortPolicy?) {
        self.policy = policy
        applyCohort()
    }

    /// Applies the cohort's limits, under the policy when one is given.
    private func applyCohort() {
        guard let fileCohort else { return }
        let cohort = policy?.applied(to: fileCohort) ?? fileCohort
        registry.configure(cohort)
        parserLimits.maxBodyBytes = cohort.limits.maxBodyBytes
    }

    /// The platform runtime run before every script, with the current rules.
    var platform: PlatformRuntime?
    /// The rules JSON the platform runtime has (to load it into a new runtime).
    var rulesJSON: [UInt8] = Array(#"{"rules":[],"rulesets":{}}"#.utf8)

    /// A throw or limit inside the runtime or a rule: the request goes on (fail
    /// open), the error is counted with its signature.
    func platformFailed(_ error: ScriptError) {
        stats.countPlatformError(ErrorSignature.normalize(error.message))
        let second = DispatchTime.now().uptimeNanoseconds / 1_000_000_000
        if second != platformLogSecond {
            platformLogSecond = second
            FileHandle.standardError.write(Data("worker \(pid) of pool \(pool): platform error (request passed to the script): \(error.kind.rawValue): \(error.message.debugDescription)\n".utf8))
        }
    }
    private var platformLogSecond: UInt64 = 0

    /// Queues `connection`'s responses in `output` for `flushWrites`.
    func queueWrite(_ connection: HTTPConnection) {
        writeQueue.append(connection)
        if output.count >= Self.earlyFlushBytes { flushWrites() }
    }

    /// Writes every queued response, in the order queued; the loop calls it at the
    /// end of every turn.
    func flushWrites() {
        guard !writeQueue.isEmpty else { return }
        for connection in writeQueue { connection.writeQueued() }
        writeQueue.removeAll(keepingCapacity: true)
        output.clear(keepingAtMost: Self.outputCapacity)
    }

    /// Called when a connection closes (drain waits for the last).
    var onConnectionClosed: (() -> Void)?

    func connectionClosed(_ connection: HTTPConnection) {
        connections[connection.fd] = nil
        onConnectionClosed?()
    }

    /// Error lines forwarded to script logs per second, across scripts: a script
    /// failing on every request must not turn into a flood on the control channel.
    static let errorLogsPerSecond = 50
    private var errorLogSecond: UInt64 = 0
    private var errorLogsThisSecond = 0

    /// A script failed a request: count it and put the error in the script's log.
    func scriptFailed(_ script: LoadedScript, error: ScriptError) {
        let second = DispatchTime.now().uptimeNanoseconds / 1_000_000_000
        if second != errorLogSecond {
            errorLogSecond = second
            errorLogsThisSecond = 0
        }
        guard errorLogsThisSecond < Self.errorLogsPerSecond else { return }
        errorLogsThisSecond += 1
        control.send(.log(customer: script.customer, script: script.name, line: "error: \(error.kind.rawValue): \(error.message)"),
                     droppable: true)
    }

    /// The current request's id, for error bodies: `POOL-PID-N`.
    func nextRequestID() -> UInt64 {
        requestCounter &+= 1
        return requestCounter
    }

    /// Fault injection for tests of binary rollouts: crash after this many requests
    /// (`BULKHEAD_FAULT_CRASH_AFTER`), as a build with a bug under traffic would.
    let crashAfter = ProcessInfo.processInfo.environment["BULKHEAD_FAULT_CRASH_AFTER"].flatMap { Int($0) } ?? 0

    /// Counts one answered request. `finishedAt` is when it ended if known (the
    /// script call's last clock read), else 0.
    @inline(__always)
    func record(status: Int, startedAt: UInt64, finishedAt: UInt64 = 0) {
        stats.requests += 1
        if crashAfter > 0 && stats.requests >= crashAfter { abort() }
        statusCounts[min(max(status, 0), 599)] += 1
        stats.latency.record(nanoseconds: (finishedAt != 0 ? finishedAt : bh_now_ns()) &- startedAt)
    }

    /// Per-status counters kept as an array on the hot path, folded into
    /// `stats.statuses` when a heartbeat is built.
    var statusCounts = [Int](repeating: 0, count: 600)

    /// Counts one failed request by kind, with its error signature.
    func recordError(_ kind: RequestErrorKind, signature: String?) {
        stats.errors[kind.rawValue, default: 0] += 1
        if let signature { stats.countSignature(signature) }
    }

    /// The stats as a heartbeat carries them.
    func heartbeatStats() -> WorkerStats {
        var snapshot = stats
        for (status, count) in statusCounts.enumerated() where count > 0 {
            snapshot.statuses[String(status)] = count
        }
        snapshot.scripts = registry.count
        snapshot.scriptCounters = registry.counters()
        let splits = registry.splitCounts()
        snapshot.splits = splits.isEmpty ? nil : splits
        snapshot.openConnections = openConnections
        snapshot.residentBytes = Int(bh_resident_bytes())
        snapshot.byVersion = ledger.table(stats)
        return snapshot
    }
}

/// A thread-safe handle on the current supervisor connection (it changes when a
/// new supervisor takes over).
final class ControlLink: Sendable {
    private let current = Mutex<FrameConnection?>(nil)

    /// Replaces the connection, closing the previous one.
    func replace(with connection: FrameConnection) {
        let previous = current.withLock { value -> FrameConnection? in
            let old = value
            value = connection
            return old
        }
        previous?.close()
    }

    /// Forgets `connection` if it is still the current one.
    func clear(_ connection: FrameConnection) {
        current.withLock { value in
            if value === connection { value = nil }
        }
    }

    /// Sends a message to the supervisor, if one is connected.
    @discardableResult
    func send(_ message: WorkerMessage, droppable: Bool = false) -> Bool {
        guard let connection = current.withLock({ $0 }) else { return false }
        return connection.send(ControlCodec.encode(message), droppable: droppable)
    }
}
