#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Synchronization

/// Keeps the ingress's routing table in step with `DATA/run/routes.json`: loads it at
/// start and whenever the file changes, polling its identity (inode, size, times) on
/// its own thread, so the event loops never touch the file system.
///
/// Fail static: a file that is missing, unreadable, too large or malformed changes
/// nothing. The last good table stays in force and the problem is logged once per
/// version of the file, not once per poll.
final class RoutesWatcher: Sendable {
    /// What a poll found.
    enum PollResult: Equatable {
        /// The file is as it was at the last poll.
        case unchanged
        /// A new table was loaded (and published).
        case loaded(version: Int)
        /// The file changed but was refused; the last good table stays.
        case refused(RoutesFileError)
    }

    private struct State {
        var table: RoutingTable?
        /// The identity of the file the last poll looked at; nil when it was missing.
        var seen: FileIdentity?
        /// Whether a poll has run (a missing file at the first poll is news).
        var polled = false
        /// The problem last logged, so each is logged once.
        var loggedProblem: RoutesFileError?
    }

    let path: String
    private let intervalMicroseconds: Int
    private let maxFileBytes: Int
    private let publish: @Sendable (RoutingTable) -> Void
    private let log: @Sendable (String) -> Void
    private let state = Mutex(State())
    private let stopped = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(
        path: String, interval: Duration, maxFileBytes: Int,
        publish: @escaping @Sendable (RoutingTable) -> Void,
        log: @escaping @Sendable (String) -> Void
    ) {
        self.path = path
        let parts = interval.components
        self.intervalMicroseconds = max(1_000, min(1_000_000, Int(parts.seconds) * 1_000_000 + Int(parts.attoseconds / 1_000_000_000_000)))
        self.maxFileBytes = maxFileBytes
        self.publish = publish
        self.log = log
    }

    /// The table in force, nil before any file was loaded.
    var table: RoutingTable? {
        state.withLock { $0.table }
    }

    /// Polls every `interval` on a thread of its own until `stop()`.
    func start() {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                _ = poll()
                usleep(useconds_t(intervalMicroseconds))
            }
            done.signal()
        }
        thread.name = "routes-watch"
        thread.start()
    }

    /// Stops polling; returns once the thread has ended.
    func stop() {
        guard started.load(ordering: .relaxed), !stopped.exchange(true, ordering: .relaxed) else { return }
        done.wait()
    }

    // MARK: - Polling

    /// Looks at the file once: loads it when it changed, publishes a good table, and
    /// logs a refused one (once).
    func poll() -> PollResult {
        let current = FileIdentity(path: path)
        let firstPoll = state.withLock { state -> Bool in
            defer { state.polled = true }
            return !state.polled
        }
        if !firstPoll, current == state.withLock({ $0.seen }) {
            return .unchanged
        }
        guard current != nil else {
            state.withLock { $0.seen = nil }
            refuse(.missing)
            return .refused(.missing)
        }
        let identity: FileIdentity
        let table: RoutingTable
        switch read() {
        case .failure(let error):
            // Remember what was refused, so the same bytes are not parsed again every
            // poll; any change to the file (a rename, a write) makes it new again.
            state.withLock { $0.seen = current }
            refuse(error)
            return .refused(error)
        case .success(let loaded):
            (identity, table) = loaded
        }
        let recovered = state.withLock { state -> RoutesFileError? in
            state.seen = identity
            state.table = table
            defer { state.loggedProblem = nil }
            return state.loggedProblem
        }
        if let recovered {
            log("ingress: routes file \(path): version \(table.version) loaded (it was \(recovered))")
        }
        publish(table)
        return .loaded(version: table.version)
    }

    private func refuse(_ error: RoutesFileError) {
        let (shouldLog, version) = state.withLock { state -> (Bool, Int?) in
            let fresh = state.loggedProblem != error
            state.loggedProblem = error
            return (fresh, state.table?.version)
        }
        guard shouldLog else { return }
        let keeping = version.map { "keeping routing table version \($0)" }
            ?? "no routing table yet: answering 502 bad-gateway until one loads"
        log("ingress: routes file \(path) \(error); \(keeping)")
    }

    /// Reads and parses the file through one descriptor, so the identity, the size
    /// check and the bytes all belong to the same file even if it is replaced meanwhile.
    private func read() -> Result<(FileIdentity, RoutingTable), RoutesFileError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return .failure(errno == ENOENT ? .missing : .unreadable(String(cString: strerror(errno))))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(.unreadable(String(cString: strerror(errno)))) }
        let identity = FileIdentity(info)
        let size = Int(info.st_size)
        guard size <= maxFileBytes else { return .failure(.tooLarge(size: size, limit: maxFileBytes)) }
        var bytes = [UInt8](repeating: 0, count: size + 1)
        var count = 0
        while count < bytes.count {
            let got = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.read(fd, base + count, buffer.count - count)
            }
            if got < 0 {
                if errno == EINTR { continue }
                return .failure(.unreadable(String(cString: strerror(errno))))
            }
            if got == 0 { break }
            count += got
        }
        // More bytes than fstat said: it is being written in place; the next poll
        // sees its new size and reads it again.
        guard count <= size else { return .failure(.malformed("changed while being read")) }
        do throws(RoutesFileError) {
            return .success((identity, try RoutingTable.parse(Data(bytes[0..<count]))))
        } catch {
            return .failure(error)
        }
    }
}
