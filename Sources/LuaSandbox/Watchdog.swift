import CLuaSandbox
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ends what the instruction hook cannot: a call stuck inside one C function
/// (`string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')` runs for hours
/// without executing a single Lua instruction), a finalizer, `lua_close`.
///
/// ``LuaScript`` arms it around every entry into Lua — loading, every `handle` call,
/// `lua_close` — with the call's wall deadline and its chunk name, and disarms it
/// after. A thread of its own polls the armed deadline; once the deadline plus
/// `margin` has passed, it calls `onExpire` from that thread with the chunk name and
/// the time since arming. The caller decides what then: `bulkhead try` prints
/// `limit-wall` and `_exit(1)`s, a worker kills itself so the supervisor replaces
/// it. Nothing can unwind a thread stuck in C, so ending the process is the only
/// real remedy.
///
/// Arming is a clock read plus three atomic stores: no lock and no system call per
/// request. One watchdog watches one armed section at a time, so give each thread
/// that runs Lua its own (nested sections on that thread, such as a script released
/// inside a `handle` closure, are restored properly).
public final class Watchdog: Sendable {
    /// How long past the deadline a section may run before `onExpire` is called.
    public let margin: Duration

    private let core: Core

    /// What the polling thread shares with the arming thread. The thread keeps its
    /// own reference, so the `Watchdog` itself can be released; it then tells the
    /// thread to stop.
    private final class Core: Sendable {
        /// CLOCK_MONOTONIC deadline of the armed section in ns; 0 = disarmed.
        let deadline = Atomic<UInt64>(0)
        /// When the armed section began (ns).
        let armedAt = Atomic<UInt64>(0)
        /// The label id of the armed section.
        let label = Atomic<UInt64>(0)
        /// Chunk names by label id, registered once per script (not per arming).
        let labels = Mutex<[UInt64: String]>([:])
        let nextLabel = Atomic<UInt64>(1)
        let stopped = Atomic<Bool>(false)
        let marginNanoseconds: UInt64
        let pollNanoseconds: UInt64
        let onExpire: @Sendable (String, Duration) -> Void

        init(marginNanoseconds: UInt64, pollNanoseconds: UInt64, onExpire: @escaping @Sendable (String, Duration) -> Void) {
            self.marginNanoseconds = marginNanoseconds
            self.pollNanoseconds = pollNanoseconds
            self.onExpire = onExpire
        }

        /// The polling loop; returns when the watchdog is released.
        func run() {
            var lastFired: UInt64 = 0
            while !stopped.load(ordering: .acquiring) {
                Watchdog.sleep(nanoseconds: pollNanoseconds)
                let deadline = self.deadline.load(ordering: .acquiring)
                guard deadline != 0, deadline != lastFired else { continue }
                let now = bh_now_ns()
                guard now >= deadline &+ marginNanoseconds else { continue }
                let labelID = label.load(ordering: .relaxed)
                let start = armedAt.load(ordering: .relaxed)
                // The arming thread may have moved on to another section between the
                // loads: report only if the deadline is still the one we checked.
                guard self.deadline.load(ordering: .acquiring) == deadline else { continue }
                lastFired = deadline
                let name = labels.withLock { $0[labelID] } ?? "?"
                onExpire(name, .nanoseconds(Int64(clamping: now &- start)))
            }
        }
    }

    /// What an armed section replaced; ``disarm(_:)`` puts it back.
    struct Section {
        fileprivate let deadline: UInt64
        fileprivate let armedAt: UInt64
        fileprivate let label: UInt64
    }

    /// Starts the watchdog's thread. `onExpire(chunkName, elapsed)` is called from
    /// that thread, at most once per armed section, once the section has run `margin`
    /// past its deadline; `elapsed` counts from when the section was armed. The
    /// thread polls every quarter of `margin` (between 1 ms and 100 ms).
    public init(margin: Duration, onExpire: @escaping @Sendable (_ chunkName: String, _ elapsed: Duration) -> Void) {
        self.margin = margin
        let marginNanoseconds = Watchdog.nanoseconds(margin)
        let poll = min(max(marginNanoseconds / 4, 1_000_000), 100_000_000)
        core = Core(marginNanoseconds: marginNanoseconds, pollNanoseconds: poll, onExpire: onExpire)
        Watchdog.startThread(core)
    }

    deinit {
        core.stopped.store(true, ordering: .releasing)
    }

    // MARK: Labels

    /// Registers a chunk name once (a lock, at script creation) and returns the id
    /// that arming passes instead of the name.
    func register(label name: String) -> UInt64 {
        let id = core.nextLabel.wrappingAdd(1, ordering: .relaxed).oldValue
        core.labels.withLock { $0[id] = name }
        return id
    }

    /// Forgets a label registered with ``register(label:)``.
    func unregister(label id: UInt64) {
        _ = core.labels.withLock { $0.removeValue(forKey: id) }
    }

    // MARK: Arming

    /// Arms a section that began at `now` (CLOCK_MONOTONIC ns, `bh_now_ns()`) with
    /// `deadline`, labelled `label`. Returns what it replaced, for ``disarm(_:)``.
    @inline(__always)
    func arm(label: UInt64, now: UInt64, deadline: UInt64) -> Section {
        let previous = Section(
            deadline: core.deadline.load(ordering: .relaxed),
            armedAt: core.armedAt.load(ordering: .relaxed),
            label: core.label.load(ordering: .relaxed)
        )
        core.label.store(label, ordering: .relaxed)
        core.armedAt.store(now, ordering: .relaxed)
        // Last, with release: the thread that sees this deadline sees the two above.
        core.deadline.store(deadline, ordering: .releasing)
        return previous
    }

    /// Ends the section `arm` returned, restoring the one it interrupted (if any).
    @inline(__always)
    func disarm(_ previous: Section) {
        core.deadline.store(0, ordering: .releasing)
        if previous.deadline != 0 {
            core.label.store(previous.label, ordering: .relaxed)
            core.armedAt.store(previous.armedAt, ordering: .relaxed)
            core.deadline.store(previous.deadline, ordering: .releasing)
        }
    }

    // MARK: Thread

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        let whole = UInt64(clamping: seconds).multipliedReportingOverflow(by: 1_000_000_000)
        guard !whole.overflow else { return UInt64.max / 2 }
        return whole.partialValue &+ UInt64(clamping: attoseconds / 1_000_000_000)
    }

    fileprivate static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR {
            request = remaining
        }
    }

    /// Starts the detached polling thread; it holds `core` until it stops.
    private static func startThread(_ core: Core) {
        let retained = Unmanaged.passRetained(core)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attributes, 256 * 1024)
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { raw in
            guard let raw else { return nil }
            let core = Unmanaged<Core>.fromOpaque(raw).takeRetainedValue()
            core.run()
            return nil
        }, retained.toOpaque())
        if result != 0 {
            // Without its thread the watchdog cannot act; a worker must not serve
            // scripts unguarded, so say so loudly where the operator looks.
            retained.release()
            let message = "bulkhead: cannot start the Lua watchdog thread (error \(result))\n"
            message.utf8CString.withUnsafeBufferPointer { buffer in
                _ = write(2, buffer.baseAddress, buffer.count - 1)
            }
        }
    }
}
