#if canImport(Glibc)
import Glibc
#endif
import CBulkheadPosix
import CLuaSandbox

/// Spreads a pool's connections over its workers.
///
/// Every worker of a pool blocks in `accept` on the one listening socket, and the
/// kernel hands each new connection to whichever is waiting. A worker that hands a
/// connection to its loop quickly is back in `accept` before a sibling woken for
/// the next one gets a core, so a burst of keep-alive connections (a client
/// opening its pool at start) can all land on one worker, and stay there: the
/// others then serve nothing, and a rollout stage made of them never gets the
/// traffic its gate needs.
///
/// So each worker publishes, in a small file mapped by every worker of the pool,
/// how many connections it holds and whether its loop is free to take more; a
/// worker holding more connections than a sibling that can take one leaves the
/// next connection to it, so counts stay within one of each other. A sibling
/// counts while its process lives and it has not begun draining, and while its
/// loop either waits for events and turned within `idleTurnLimit` (an idle loop
/// turns at every 200 ms heartbeat; a stopped process, or words left by an earlier
/// run, are older) or began its current turn within `busyTurnLimit` (a loop inside
/// a long script call cannot take a connection, so the others take it).
final class AcceptBalance: @unchecked Sendable {
    /// Slots in the file: a pool's workers are numbered from 0.
    static let slots = 256
    /// A loop busy in one turn for longer than this is left out.
    static let busyTurnLimit: Int64 = 100_000_000
    /// A waiting loop that has not turned for this long is not running.
    static let idleTurnLimit: Int64 = 300_000_000

    /// One worker's words (a cache line each).
    private enum Word: Int {
        case pid = 0, accepting, connections, turnStartedAt, waiting
    }
    private static let wordsPerSlot = 8

    private let words: UnsafeMutablePointer<Int64>
    private let slot: Int
    private let pid: Int64

    /// Maps the pool's file, creating it if needed; nil when it cannot (the
    /// worker then accepts as the kernel hands out, unbalanced but correct).
    init?(path: String, slot: Int) {
        guard slot >= 0 && slot < Self.slots else { return nil }
        // O_NOFOLLOW: the file is truncated below; never one a link points at.
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = Self.slots * Self.wordsPerSlot * 8
        guard ftruncate(fd, off_t(size)) == 0,
              let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED
        else { return nil }
        words = mapped.bindMemory(to: Int64.self, capacity: Self.slots * Self.wordsPerSlot)
        self.slot = slot
        self.pid = Int64(getpid())
        store(.connections, 0)
        store(.waiting, 0)
        store(.turnStartedAt, Int64(bh_now_ns()))
        store(.pid, pid)
        store(.accepting, 1)
    }

    private func pointer(_ slot: Int, _ word: Word) -> UnsafeMutablePointer<Int64> {
        words + slot * Self.wordsPerSlot + word.rawValue
    }

    private func store(_ word: Word, _ value: Int64) {
        bh_shared_store(pointer(slot, word), value)
    }

    private func load(_ slot: Int, _ word: Word) -> Int64 {
        bh_shared_load(pointer(slot, word))
    }

    /// Whether this slot is still ours: a replacement for the slot (the next
    /// instance, while this one drains) writes its own pid.
    private var ours: Bool { load(slot, .pid) == pid }

    // MARK: From the loop

    /// The loop holds `count` connections.
    func publish(connections count: Int) {
        if ours { store(.connections, Int64(count)) }
    }

    /// The loop woke at `now` (CLOCK_MONOTONIC ns).
    func turnStarted(at now: UInt64) {
        guard ours else { return }
        store(.waiting, 0)
        store(.turnStartedAt, Int64(now))
    }

    /// The loop is about to wait for events.
    func willWait() {
        if ours { store(.waiting, 1) }
    }

    /// The worker drains: it takes no more connections, so it is no one's sibling.
    func stopAccepting() {
        if ours { store(.accepting, 0) }
    }

    // MARK: From the acceptor

    /// Whether this worker should take the next connection: no live sibling that
    /// can take one holds fewer connections.
    func mayAccept() -> Bool {
        let mine = load(slot, .connections)
        guard mine > 0 else { return true }
        let now = Int64(bh_now_ns())
        for other in 0..<Self.slots where other != slot {
            let otherPID = load(other, .pid)
            guard otherPID > 0, load(other, .accepting) == 1, load(other, .connections) < mine else { continue }
            let turnAge = now - load(other, .turnStartedAt)
            guard turnAge < (load(other, .waiting) == 1 ? Self.idleTurnLimit : Self.busyTurnLimit) else { continue }
            // A worker that died without draining leaves its words behind.
            if kill(pid_t(otherPID), 0) == 0 || errno == EPERM { return false }
        }
        return true
    }
}
