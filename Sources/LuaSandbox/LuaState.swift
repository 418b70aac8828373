import CLua
import CLuaSandbox

/// One sandboxed `lua_State`: its C context (memory counter and cap, instruction
/// budget, deadline, log callback), the limits it runs under, and the watchdog
/// arming around every entry into Lua. Kinds of scripts build on it: ``LuaScript``
/// (customer scripts, `handle(req)`) now, the platform runtime (`on_request(req,
/// rules)`) next.
///
/// Stack discipline: between calls the state's stack is empty. Every call below
/// records the stack top in the context (`call_base`), leaves its results or its
/// error message above it, and `bh_call_end` pops back to it once the host has read
/// them.
///
/// Must stay on one thread at a time.
final class LuaState {
    /// The `lua_State *`.
    let handle: OpaquePointer
    /// Owned; freed in `deinit` after `lua_close` (the allocator counts into it
    /// while the state closes).
    let context: UnsafeMutablePointer<bh_context>
    /// The name in messages: `hello.lua:3: ...`.
    let chunkName: String
    let watchdog: Watchdog?
    private let watchdogLabel: UInt64
    /// Holds the log closure; C keeps an unretained pointer to it.
    private let logSink: LogSink
    /// Set during a call, so a call from inside a response closure of the same state
    /// is refused instead of overwriting the response being read.
    var busy = false

    /// Budgets from this many instructions up are counted lazily in this state
    /// (``SandboxLimits/lazyCountingThreshold`` unless set; at least twice
    /// ``SandboxLimits/lazyCountingTolerance``, so that a lazy call always gets
    /// counted instructions after its charge).
    var lazyCountingThreshold: Int {
        get { context.pointee.lazy_min_budget > 0 ? Int(context.pointee.lazy_min_budget) : SandboxLimits.lazyCountingThreshold }
        set { context.pointee.lazy_min_budget = Int64(max(newValue, 2 * SandboxLimits.lazyCountingTolerance)) }
    }

    /// The limits of every call from now on. The memory cap applies at once.
    var limits: SandboxLimits {
        didSet { context.pointee.mem_limit = LuaState.memoryCap(limits) }
    }

    /// Creates the state and opens the sandbox in it (libraries, allow-listed
    /// globals, the hook). Throws `limitMemory` when the cap is too small for that.
    init(chunkName: String, limits: SandboxLimits, watchdog: Watchdog?, log: @escaping (String) -> Void) throws(ScriptError) {
        let context = UnsafeMutablePointer<bh_context>.allocate(capacity: 1)
        bh_context_init(context)
        context.pointee.mem_limit = LuaState.memoryCap(limits)
        guard bh_context_set_chunk_name(context, chunkName) != 0, let state = bh_state_new(context) else {
            bh_context_destroy(context)
            context.deallocate()
            throw ScriptError(kind: .limitMemory, message: "\(chunkName): cannot create a Lua state within the memory limit")
        }
        self.handle = state
        self.context = context
        self.chunkName = chunkName
        self.limits = limits
        self.watchdog = watchdog
        self.watchdogLabel = watchdog?.register(label: chunkName) ?? 0
        self.logSink = LogSink(log)
        // From here on, deinit closes the state if anything below throws.
        context.pointee.log_fn = logThunk
        context.pointee.log_ud = Unmanaged.passUnretained(logSink).toOpaque()

        let section = beginCall()
        let outcome = bh_open_sandbox(state)                 // [] -> []
        endCall(section)
        if outcome != BH_OK {
            throw takeError(outcome)
        }
    }

    deinit {
        // lua_close runs with hooks off (it would run finalizers; the sandbox has
        // none, but the watchdog stays the last word on anything that runs Lua).
        var section: Watchdog.Section?
        if let watchdog, limits.wallMilliseconds > 0 {
            let now = bh_now_ns()
            section = watchdog.arm(label: watchdogLabel, now: now, deadline: now &+ LuaState.wallNanoseconds(limits))
        }
        lua_close(handle)
        if let watchdog {
            if let section {
                watchdog.disarm(section)
            }
            watchdog.unregister(label: watchdogLabel)
        }
        bh_context_destroy(context)
        context.deallocate()
    }

    /// Bytes the state holds, as its allocator counts them.
    var memoryUsed: Int { context.pointee.mem_used }

    /// When the last call ended (CLOCK_MONOTONIC ns, the clock read that checked its
    /// deadline), or 0 when it had no deadline or stopped over a limit.
    var finishedAt: UInt64 { context.pointee.finished_ns }

    // MARK: Calls

    /// Starts a call: resets the budget, the deadline and the hit flags (a few
    /// stores), and arms the watchdog when there is a deadline, which counts from
    /// `now` (CLOCK_MONOTONIC ns; 0: the clock is read here).
    @inline(__always)
    func beginCall(now given: UInt64 = 0) -> Watchdog.Section? {
        let limits = self.limits
        var deadline: UInt64 = 0
        var section: Watchdog.Section?
        if limits.wallMilliseconds > 0 {
            let now = given != 0 ? given : bh_now_ns()
            deadline = now &+ LuaState.wallNanoseconds(limits)
            if let watchdog {
                section = watchdog.arm(label: watchdogLabel, now: now, deadline: deadline)
            }
        }
        bh_begin(handle, context, Int64(max(0, limits.instructions)), deadline)
        return section
    }

    /// Ends a call begun with ``beginCall()``: disarms the watchdog.
    @inline(__always)
    func endCall(_ section: Watchdog.Section?) {
        if let section, let watchdog {
            watchdog.disarm(section)
        }
    }

    /// The error of a failed call (`outcome` is not `BH_OK`), copied out of the
    /// context before its views go away; pops the call's values (`bh_call_end`).
    func takeError(_ outcome: bh_outcome) -> ScriptError {
        let view = context.pointee.error
        let message: String
        if let pointer = view.ptr, view.len > 0 {
            message = String(decoding: UnsafeRawBufferPointer(start: pointer, count: view.len), as: UTF8.self)
        } else {
            message = "\(chunkName): unknown error"
        }
        bh_call_end(handle)                                  // [base, values...] -> [base]
        return ScriptError(kind: ScriptErrorKind(outcome), message: message)
    }

    /// Loads `source` as a text chunk and runs it under the limits, then checks that
    /// the global `required` is a function (`signature` names it in the error).
    func run(source: UnsafeRawBufferPointer, required: String, signature: String) throws(ScriptError) {
        let section = beginCall()
        var outcome = bh_load(handle, source.baseAddress?.assumingMemoryBound(to: CChar.self), source.count)
        if outcome == BH_OK {                                // [] -> [chunk]
            outcome = bh_run_chunk(handle, required, signature) // [chunk] -> []
        }                                                    // or [message]
        endCall(section)
        guard outcome == BH_OK else {
            throw takeError(outcome)
        }
        bh_call_end(handle)
    }

    // MARK: Helpers

    private static func memoryCap(_ limits: SandboxLimits) -> Int {
        max(0, limits.memoryBytes)
    }

    /// The wall limit in ns, clamped so that adding it to a clock reading cannot wrap.
    static func wallNanoseconds(_ limits: SandboxLimits) -> UInt64 {
        UInt64(min(max(0, limits.wallMilliseconds), 1_000_000_000)) &* 1_000_000
    }
}

@available(*, unavailable)
extension LuaState: Sendable {}

/// The Swift closure behind the C log callback.
private final class LogSink {
    let emit: (String) -> Void

    init(_ emit: @escaping (String) -> Void) {
        self.emit = emit
    }
}

/// Receives `log(...)` lines from C (`ud` is the state's `LogSink`). It calls no Lua,
/// so no Lua error can unwind through it.
private let logThunk: bh_log_fn = { userData, line, length in
    guard let userData, let line else { return }
    let sink = Unmanaged<LogSink>.fromOpaque(userData).takeUnretainedValue()
    sink.emit(String(decoding: UnsafeRawBufferPointer(start: line, count: length), as: UTF8.self))
}
