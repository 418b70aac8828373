#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import CBulkheadPosix
import CLuaSandbox
import Foundation
import Synchronization

/// What the loop calls when a watched descriptor is ready.
protocol LoopHandler: AnyObject {
    /// The descriptor is ready: `events` holds `BH_EVENT_*` bits.
    func ready(_ events: UInt32)
}

/// The worker's one data-plane thread: `epoll_wait` over its connections, tasks
/// handed over from other threads, and timers.
///
/// It does only what a worker needs, which is why it is not SwiftNIO: a request
/// is one `read`, a parse in the read buffer, two Lua calls and one `write`, and a
/// channel pipeline around that cost more than the parse (BENCHMARKS.md, "Where the
/// time goes"). Descriptors are level-triggered, so a handler that leaves bytes
/// unread is simply called again.
///
/// Everything but `execute`, `submit` and `inLoop` must be called on the loop.
final class WorkerLoop: @unchecked Sendable {
    /// Ready descriptors taken per `epoll_wait`.
    private static let batch = 64

    private let epoll: Int32
    /// Written to wake the loop for tasks from other threads.
    private let wakeFD: Int32
    private static let wakeToken = UInt64.max

    private let tasks = Mutex<[@Sendable () -> Void]>([])
    /// A wake-up is already on its way; later `execute`s need not write again.
    private let wakePending = Atomic<Bool>(false)
    /// The loop thread's `pthread_self`, 0 until it runs.
    private let loopThread = Atomic<UInt>(0)

    /// Handlers by descriptor, with the generation their token carries: a stale
    /// event for a closed descriptor, reused since, is dropped.
    private struct Slot {
        var handler: (any LoopHandler)?
        var generation: UInt32
        static var empty: Slot { Slot(handler: nil, generation: 0) }
    }
    private var slots: [Slot] = []
    private var nextGeneration: UInt32 = 1

    private struct Timer {
        let id: UInt64
        let deadline: UInt64
        let task: () -> Void
    }
    private var timers: [Timer] = []
    private var nextTimerID: UInt64 = 1

    private let tokens: UnsafeMutablePointer<UInt64>
    private let events: UnsafeMutablePointer<UInt32>

    /// Runs at the end of every turn, after the events, tasks and timers, before the
    /// loop waits again.
    var endOfTurn: (() -> Void)?
    /// Runs first in every turn, with `now` just read.
    var startOfTurn: ((UInt64) -> Void)?

    /// CLOCK_MONOTONIC (ns) as of the loop's last wake-up: the time of every event
    /// handled in this turn, read once.
    private(set) var now: UInt64 = bh_now_ns()

    init() throws(SystemError) {
        epoll = bh_epoll_create()
        guard epoll >= 0 else { throw SystemError("epoll_create1") }
        wakeFD = bh_eventfd()
        guard wakeFD >= 0 else {
            let error = SystemError("eventfd")
            Glibc.close(epoll)
            throw error
        }
        guard bh_epoll_watch(epoll, wakeFD, 1, BH_EVENT_READ, Self.wakeToken) == 0 else {
            let error = SystemError("epoll_ctl eventfd")
            Glibc.close(epoll)
            Glibc.close(wakeFD)
            throw error
        }
        tokens = .allocate(capacity: Self.batch)
        events = .allocate(capacity: Self.batch)
    }

    /// Starts the loop's thread. It runs for the life of the process.
    func start(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        // The loop runs the scripts: the C stack a Lua call may use is bounded by
        // LUAI_MAXCCALLS, well inside this.
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Whether the caller runs on the loop.
    var inLoop: Bool {
        loopThread.load(ordering: .acquiring) == UInt(pthread_self())
    }

    // MARK: Work from other threads

    /// Runs `task` on the loop, soon.
    func execute(_ task: @escaping @Sendable () -> Void) {
        tasks.withLock { $0.append(task) }
        if !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
    }

    /// Runs `body` on the loop and waits for its result. Not for the loop itself.
    func submit<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        precondition(!inLoop, "submit would wait on itself")
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        execute {
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }

    // MARK: Descriptors (on the loop)

    /// Watches `fd` for `events`, reported to `handler`.
    func watch(_ fd: Int32, events: UInt32, handler: any LoopHandler) throws(SystemError) {
        let index = Int(fd)
        if slots.count <= index {
            slots.append(contentsOf: repeatElement(Slot.empty, count: max(index + 1 - slots.count, 64)))
        }
        let generation = nextGeneration
        nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1
        guard bh_epoll_watch(epoll, fd, 1, events, Self.token(fd: fd, generation: generation)) == 0 else {
            throw SystemError("epoll_ctl add")
        }
        slots[index] = Slot(handler: handler, generation: generation)
    }

    /// Changes what `fd` is watched for.
    func change(_ fd: Int32, events: UInt32) {
        let index = Int(fd)
        guard index < slots.count, slots[index].handler != nil else { return }
        _ = bh_epoll_watch(epoll, fd, 0, events, Self.token(fd: fd, generation: slots[index].generation))
    }

    /// Stops watching `fd`; call before closing it.
    func forget(_ fd: Int32) {
        let index = Int(fd)
        guard index < slots.count, slots[index].handler != nil else { return }
        _ = bh_epoll_forget(epoll, fd)
        slots[index] = .empty
    }

    private static func token(fd: Int32, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: Timers (on the loop)

    /// Runs `task` on the loop once `nanoseconds` have passed; returns an id for
    /// `cancel`.
    @discardableResult
    func schedule(in nanoseconds: UInt64, _ task: @escaping () -> Void) -> UInt64 {
        let id = nextTimerID
        nextTimerID += 1
        timers.append(Timer(id: id, deadline: bh_now_ns() + nanoseconds, task: task))
        return id
    }

    /// Runs `task` now and then every `nanoseconds`, for the life of the loop.
    func scheduleRepeated(every nanoseconds: UInt64, _ task: @escaping () -> Void) {
        task()
        schedule(in: nanoseconds) { [unowned self] in scheduleRepeated(every: nanoseconds, task) }
    }

    func cancel(_ id: UInt64) {
        timers.removeAll { $0.id == id }
    }

    // MARK: The loop

    private func run() {
        loopThread.store(UInt(pthread_self()), ordering: .releasing)
        while true {
            let count = bh_epoll_wait(epoll, tokens, events, Int32(Self.batch), nextTimeout())
            now = bh_now_ns()
            startOfTurn?(now)
            if count < 0 {
                // EINTR: the instruction budget's tick, which targets this thread.
                if errno != EINTR {
                    FileHandle.standardError.write(Data("worker \(getpid()): epoll_wait: \(String(cString: strerror(errno)))\n".utf8))
                    usleep(1000)
                }
            }
            var woken = false
            for index in 0..<max(0, Int(count)) {
                let token = tokens[index]
                if token == Self.wakeToken {
                    woken = true
                    continue
                }
                let slot = Int(UInt32(truncatingIfNeeded: token))
                guard slot < slots.count, slots[slot].generation == UInt32(truncatingIfNeeded: token >> 32),
                      let handler = slots[slot].handler
                else { continue }
                handler.ready(events[index])
            }
            if woken { runTasks() }
            if !timers.isEmpty { runTimers() }
            endOfTurn?()
        }
    }

    private func runTasks() {
        var value: UInt64 = 0
        _ = Glibc.read(wakeFD, &value, 8)
        wakePending.store(false, ordering: .releasing)
        let taken = tasks.withLock { queued -> [@Sendable () -> Void] in
            let taken = queued
            queued.removeAll(keepingCapacity: true)
            return taken
        }
        for task in taken { task() }
    }

    /// Runs the timers that are due, earliest first; one cancelled by another on
    /// the way does not run.
    private func runTimers() {
        let time = bh_now_ns()
        while true {
            // A scan, not a filtered copy: this runs every turn.
            var earliest = -1
            for index in timers.indices where timers[index].deadline <= time {
                if earliest < 0 || timers[index].deadline < timers[earliest].deadline { earliest = index }
            }
            guard earliest >= 0 else { return }
            timers.remove(at: earliest).task()
        }
    }

    /// Milliseconds to the next timer (rounded up), or -1 with none.
    private func nextTimeout() -> Int32 {
        guard let next = timers.lazy.map(\.deadline).min() else { return -1 }
        let time = bh_now_ns()
        guard next > time else { return 0 }
        return Int32(min((next - time + 999_999) / 1_000_000, 60_000))
    }
}

/// A value confined to a loop, carried across threads only to be used on it
/// (debug builds check that it is).
struct LoopBound<Value>: @unchecked Sendable {
    private let stored: Value
    private let loop: WorkerLoop

    init(_ value: Value, loop: WorkerLoop) {
        self.stored = value
        self.loop = loop
    }

    var value: Value {
        assert(loop.inLoop, "used off its loop")
        return stored
    }
}
