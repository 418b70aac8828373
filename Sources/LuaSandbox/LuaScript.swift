import CLuaSandbox

/// A customer's script, loaded in a sandboxed `lua_State` of its own (its own
/// globals, string metatable, collector), ready to answer requests with its global
/// `handle(req)`.
///
/// The state stays warm between requests: what the script keeps in its globals
/// survives from one request to the next, and a request that fails (an error, a
/// limit) leaves the state usable for the next one. Each call runs under
/// ``limits``; a ``Watchdog``, when given, is armed around every entry into Lua.
///
/// Not thread-safe: use a script from one thread at a time.
public final class LuaScript {
    let state: LuaState

    /// Creates the state, loads `source` as text (never bytecode) and runs its
    /// top-level chunk under `limits`, then checks that it defines `handle`.
    ///
    /// - Parameters:
    ///   - chunkName: the name in messages (`hello.lua` gives `hello.lua:3: ...`).
    ///   - source: the Lua source.
    ///   - limits: the limits of loading and of every call.
    ///   - watchdog: armed around loading, every call and closing the state,
    ///     whenever `limits` has a wall deadline (`wallMilliseconds > 0`).
    ///   - log: receives each `log(...)` line of the script (on the calling thread).
    /// - Throws: ``ScriptError`` with kind `.syntax` (with the line), `.limitCPU`,
    ///   `.limitMemory`, `.limitWall`, or `.scriptError` (the chunk raised, or it
    ///   defines no function `handle`).
    public init(
        chunkName: String,
        source: [UInt8],
        limits: SandboxLimits,
        watchdog: Watchdog? = nil,
        log: @escaping (String) -> Void = { _ in }
    ) throws(ScriptError) {
        state = try LuaState(chunkName: chunkName, limits: limits, watchdog: watchdog, log: log)
        let state = self.state
        // withUnsafeBytes cannot rethrow a typed error; carry it out as a value.
        let result: Result<Void, ScriptError> = source.withUnsafeBytes { bytes in
            do throws(ScriptError) {
                try state.run(source: bytes, required: "handle", signature: "handle(req)")
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// The same as the initializer above, with the source as a string.
    public convenience init(
        chunkName: String,
        source: String,
        limits: SandboxLimits,
        watchdog: Watchdog? = nil,
        log: @escaping (String) -> Void = { _ in }
    ) throws(ScriptError) {
        try self.init(chunkName: chunkName, source: Array(source.utf8), limits: limits, watchdog: watchdog, log: log)
    }

    /// The chunk name given at creation.
    public var chunkName: String { state.chunkName }

    /// The limits of every call from now on (a cohort change may update them). A
    /// lower memory cap applies at once; the state keeps what it already holds.
    public var limits: SandboxLimits {
        get { state.limits }
        set { state.limits = newValue }
    }

    /// Bytes the script's state holds now.
    public var memoryUsed: Int { state.memoryUsed }

    /// When the last call ended (CLOCK_MONOTONIC ns, as `bh_now_ns()`), read to check
    /// its deadline; 0 when it had none (or stopped over a limit). Saves the host a
    /// clock read of its own.
    public var finishedAt: UInt64 { state.finishedAt }

    /// Calls `handle(req)` with `request` under the limits and hands the converted
    /// response to `respond`, whose result is returned.
    ///
    /// The response's views are valid only inside `respond`. On the success path
    /// nothing is allocated in Swift: the request is pushed from its views, the
    /// response is read in place.
    ///
    /// - Returns: `respond`'s result, or the ``ScriptError`` of the call: the
    ///   script raised or returned a bad response (`.scriptError`), or a limit was
    ///   hit (`.limitCPU`, `.limitWall` — even if the script caught that error and
    ///   returned normally — or `.limitMemory`). A call made from inside `respond`
    ///   of the same script is refused with `.scriptError`.
    ///
    /// `startedAt`, when not 0, is when the call starts (CLOCK_MONOTONIC ns, as
    /// `bh_now_ns()`; its wall deadline counts from then): a time the caller has
    /// just read, such as another state's ``finishedAt``.
    @inlinable
    public func handle<R>(
        _ request: LuaRequest, startedAt: UInt64 = 0, _ respond: (LuaResponse) -> R
    ) -> Result<R, ScriptError> {
        // Inlinable so the caller's specialization avoids generic metadata per call;
        // the work is in the two non-generic halves below.
        switch startCall(request, startedAt: startedAt) {
        case .success(let response):
            let result = respond(LuaResponse(response))
            finishCall()
            return .success(result)
        case .failure(let error):
            return .failure(error)
        }
    }

    /// First half of ``handle(_:_:)``: runs the call; on success the response stays
    /// anchored on the Lua stack ([] -> [result, anchors...]) until ``finishCall()``,
    /// on failure the stack is already back to empty.
    @usableFromInline
    func startCall(_ request: LuaRequest, startedAt: UInt64) -> Result<UnsafePointer<bh_response>, ScriptError> {
        let state = self.state
        guard !state.busy else {
            return .failure(ScriptError(kind: .scriptError, message: "\(state.chunkName): handle called again during a call of the same script"))
        }
        // Busy from here until the response is popped: neither the log callback nor
        // `respond` may start another call on this state meanwhile.
        state.busy = true
        var raw = request.raw
        let section = state.beginCall(now: startedAt)
        let outcome = bh_call_handle(state.handle, &raw)     // [] -> [result, anchors...] or [message]
        state.endCall(section)
        guard outcome == BH_OK else {
            state.busy = false
            return .failure(state.takeError(outcome))        // -> []
        }
        return .success(bh_context_response(state.context))
    }

    /// Second half of ``handle(_:_:)``: pops the response ([result, anchors...] -> []).
    @usableFromInline
    func finishCall() {
        state.busy = false
        bh_call_end(state.handle)
    }
}

@available(*, unavailable)
extension LuaScript: Sendable {}
