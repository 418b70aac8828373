import CLuaSandbox

/// The platform's Lua runtime: one Lua file (a runtime artifact) loaded in a
/// sandboxed `lua_State` of its own, called before every customer script with
/// `on_request(req, rules)`.
///
/// The state is built exactly like a customer script's (the same allow-listed
/// globals, `log`, `json`, the instruction hook, the memory cap, the watchdog), under
/// the platform's own limits. The rules artifact is decoded into a Lua table once
/// per rules change (``loadRules(_:)``), kept in the state's registry, and passed to
/// every call.
///
/// `req` is the very table a customer script gets, built afresh for every call from
/// the request's bytes. The runtime must treat it as read-only; nothing enforces it
/// (a read-only proxy would cost a metatable per call and break `pairs`), and nothing
/// needs to: the table lives in this state only, for this call only, so a write
/// reaches neither the customer script (another `lua_State`) nor the next request.
///
/// The state stays warm: a failed call (a throw, a limit) leaves it usable for the
/// next one.
///
/// Not thread-safe: use a runtime from one thread at a time.
public final class PlatformRuntime {
    /// The chunk name of every runtime, so its errors read `runtime.lua:12: …` whatever
    /// version is loaded (signatures drop the line number).
    public static let chunkName = "runtime.lua"

    /// The platform's limits per call: 1M instructions, a 16 MiB state, 100 ms.
    public static let defaultLimits = SandboxLimits(instructions: 1_000_000, memoryBytes: 16 << 20, wallMilliseconds: 100)

    /// Budgets from this size up are counted lazily in a runtime's state: the
    /// platform's 1M is. The budget guards against a runaway runtime, not a bill:
    /// a lazily counted call is stopped after between budget − 500k and budget
    /// instructions (the charge of the first tick, see
    /// ``SandboxLimits/lazyInstructionCounting``), and the rules engine's few
    /// thousand instructions a request run with no hook (a quarter of its time).
    public static let lazyCountingThreshold = 2 * SandboxLimits.lazyCountingTolerance

    /// The body of a block whose verdict gives none.
    public static let defaultBlockBody: [UInt8] = Array("blocked by a rule\n".utf8)

    let state: LuaState

    /// The collector's pause of the runtime's state, in percent (Lua's default: 200).
    static let collectorPause: Int32 = 300

    /// Creates the state, loads `source` as text (never bytecode) under the name
    /// `runtime.lua` and runs its top-level chunk under `limits`, then checks that it
    /// defines `on_request`. The runtime starts with no rules: until
    /// ``loadRules(_:)`` succeeds, `on_request` gets an empty table.
    ///
    /// - Parameters:
    ///   - source: the runtime's Lua source.
    ///   - limits: the limits of loading and of every call.
    ///   - watchdog: armed around loading, every call and closing the state, whenever
    ///     `limits` has a wall deadline.
    ///   - log: receives each `log(...)` line of the runtime (on the calling thread).
    /// - Throws: ``ScriptError`` with kind `.syntax` (`runtime.lua:3: …`), a limit, or
    ///   `.scriptError` (the chunk raised, or it defines no function `on_request`).
    public init(
        source: [UInt8],
        limits: SandboxLimits = PlatformRuntime.defaultLimits,
        watchdog: Watchdog? = nil,
        log: @escaping (String) -> Void = { _ in }
    ) throws(ScriptError) {
        state = try LuaState(chunkName: PlatformRuntime.chunkName, limits: limits, watchdog: watchdog, log: log)
        let state = self.state
        state.lazyCountingThreshold = PlatformRuntime.lazyCountingThreshold
        // One runtime state per worker, called on every request: letting its heap
        // grow to 3x (not 2x) its live size between cycles costs little memory and
        // saves 2-3% of each call (SandboxBench, runtime with rules).
        bh_set_gc_pause(state.handle, PlatformRuntime.collectorPause)
        // withUnsafeBytes cannot rethrow a typed error; carry it out as a value.
        let result: Result<Void, ScriptError> = source.withUnsafeBytes { bytes in
            do throws(ScriptError) {
                try state.run(source: bytes, required: "on_request", signature: "on_request(req, rules)")
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// The same as the initializer above, with the source as a string.
    public convenience init(
        source: String,
        limits: SandboxLimits = PlatformRuntime.defaultLimits,
        watchdog: Watchdog? = nil,
        log: @escaping (String) -> Void = { _ in }
    ) throws(ScriptError) {
        try self.init(source: Array(source.utf8), limits: limits, watchdog: watchdog, log: log)
    }

    /// The limits of every call from now on.
    public var limits: SandboxLimits {
        get { state.limits }
        set { state.limits = newValue }
    }

    /// Bytes the runtime's state holds now (rules included).
    public var memoryUsed: Int { state.memoryUsed }

    /// When the last call ended (CLOCK_MONOTONIC ns), or 0: see
    /// ``LuaScript/finishedAt``.
    public var finishedAt: UInt64 { state.finishedAt }

    // MARK: Rules

    /// Makes `json` (a rules artifact) the `rules` every later call gets: decoded once,
    /// here, with the sandbox's strict JSON decoder, into a table kept in the state.
    ///
    /// This only checks that the text is JSON with an object at the top; the schema
    /// and the consumer's limits are the validator's (see
    /// ``loadRules(_:validatedBy:)``). On failure the rules loaded before stay in
    /// place (last known good).
    ///
    /// - Throws: ``PlatformRulesError``: not JSON, not an object, or the state's
    ///   memory cap.
    public func loadRules(_ json: [UInt8]) throws(PlatformRulesError) {
        let state = self.state
        guard !state.busy else {
            throw PlatformRulesError(message: "rules: cannot be loaded during a call of the runtime")
        }
        let section = state.beginCall()
        let outcome = json.withUnsafeBytes { bytes in        // [] -> [] or [message]
            bh_platform_set_rules(state.handle, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        state.endCall(section)
        guard outcome == BH_OK else {
            let error = state.takeError(outcome)             // -> []
            let message = error.message.hasPrefix("rules: ") ? error.message : "rules: \(error.message)"
            throw PlatformRulesError(message: message)
        }
        bh_call_end(state.handle)
    }

    /// Checks `json` with `validate` first and loads it only if that finds nothing:
    /// the consumer refuses what it cannot handle even when the producer checked it
    /// already (defence in depth). LuaSandbox does not depend on BulkheadCore, so
    /// the worker passes the validator in:
    ///
    /// ```swift
    /// try runtime.loadRules(bytes, validatedBy: RulesValidator.refusal)
    /// ```
    ///
    /// - Parameter validate: returns why the rules are refused (`rules: 400 rules,
    ///   more than the limit of 200`), or nil to accept them.
    /// - Throws: ``PlatformRulesError`` with the validator's message, or as
    ///   ``loadRules(_:)``. Either way the previous rules stay.
    public func loadRules(_ json: [UInt8], validatedBy validate: ([UInt8]) -> String?) throws(PlatformRulesError) {
        if let refusal = validate(json) {
            throw PlatformRulesError(message: refusal)
        }
        try loadRules(json)
    }

    // MARK: Calls

    /// Calls `on_request(req, rules)` under the limits and reads its verdict.
    ///
    /// `nil` is a pass. A table whose `action` is `"block"` is a block, with `status`
    /// (an integer from 200 to 599, 403 when absent) and `body` (a string,
    /// ``defaultBlockBody`` when absent). Anything else — another action, a bad
    /// status, a string, `false` — breaks the contract and is `.failed`, not a pass:
    /// the request still goes through (the caller fails open), but the broken
    /// runtime shows up as platform errors under one signature, so a rollout's gate
    /// stops it. The result is read with raw access only (no metamethod runs).
    ///
    /// A pass allocates nothing in Swift; a block copies its body.
    ///
    /// - Returns: `.pass`, `.block`, or `.failed` with the ``ScriptError`` of a throw
    ///   (`runtime.lua:N: …`), a bad verdict, or a limit (`.limitCPU`, `.limitWall`
    ///   even if the runtime caught that error, `.limitMemory`). A call made from
    ///   inside the `log` callback of the same runtime is `.failed` too.
    public func evaluate(_ request: LuaRequest) -> PlatformVerdict {
        let state = self.state
        guard !state.busy else {
            return .failed(ScriptError(kind: .scriptError, message: "\(state.chunkName): on_request called again during a call of the same runtime"))
        }
        state.busy = true
        var raw = request.raw
        var verdict = bh_verdict()
        let section = state.beginCall()
        let outcome = bh_platform_call(state.handle, &raw, &verdict) // [] -> [result, body?] or [message]
        state.endCall(section)
        state.busy = false
        guard outcome == BH_OK else {
            return .failed(state.takeError(outcome))         // -> []
        }
        guard verdict.block != 0 else {
            bh_call_end(state.handle)                        // -> []
            return .pass
        }
        let body: [UInt8]
        if let pointer = verdict.body.ptr {
            body = Array(UnsafeRawBufferPointer(start: pointer, count: verdict.body.len))
        } else {
            body = PlatformRuntime.defaultBlockBody
        }
        bh_call_end(state.handle)                            // -> []
        return .block(status: Int(verdict.status), body: body)
    }

    // MARK: Validation

    /// Compiles `source` as a runtime would be compiled — text only, chunk name
    /// `runtime.lua`, within the platform's memory cap — and never runs it: safe where
    /// no artifact code may execute (the supervisor's checks before a rollout).
    ///
    /// Whether the file defines `on_request` is known only by running it, which
    /// happens in the worker (``init(source:limits:watchdog:log:)``).
    ///
    /// - Returns: nil when it compiles; otherwise the error, kind `.syntax` with the
    ///   line (`runtime.lua:3: 'end' expected near <eof>`, or "attempt to load a
    ///   binary chunk"), or `.limitMemory`.
    public static func checkSyntax(source: [UInt8], limits: SandboxLimits = PlatformRuntime.defaultLimits) -> ScriptError? {
        let state: LuaState
        do {
            state = try LuaState(chunkName: PlatformRuntime.chunkName, limits: limits, watchdog: nil, log: { _ in })
        } catch {
            return error
        }
        return source.withUnsafeBytes { bytes in state.compile(source: bytes) }
    }

    /// The same as ``checkSyntax(source:limits:)`` with the source as a string.
    public static func checkSyntax(source: String, limits: SandboxLimits = PlatformRuntime.defaultLimits) -> ScriptError? {
        checkSyntax(source: Array(source.utf8), limits: limits)
    }
}

@available(*, unavailable)
extension PlatformRuntime: Sendable {}

extension LuaState {
    /// Loads `source` as a text chunk and drops it without running it. Returns the
    /// load error (`.syntax`, `.limitMemory`), or nil.
    func compile(source: UnsafeRawBufferPointer) -> ScriptError? {
        let section = beginCall()
        let outcome = bh_load(handle, source.baseAddress?.assumingMemoryBound(to: CChar.self), source.count)
        endCall(section)                                     // [] -> [chunk] or [message]
        guard outcome == BH_OK else {
            return takeError(outcome)                        // -> []
        }
        bh_call_end(handle)                                  // -> []
        return nil
    }
}
