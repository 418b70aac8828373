import LuaSandbox
import Testing

/// Budgets of `SandboxLimits.lazyCountingThreshold` and more run with no hook until
/// a timer tick lands in the call. What must hold: the budget still stops every
/// kind of loop (the hostile suite covers pcall, xpcall, coroutines and `__close`
/// with the free cohort's lazy budget), a call is never stopped before it has run
/// its budget minus the tolerance, and it is stopped once it has run the budget.
/// The wall limit here is far away (30 s), so only the instruction budget can stop
/// a call.
@Suite struct LazyCountingTests {
    static let budget = 10_000_000
    static let limits = SandboxLimits(instructions: budget, memoryBytes: 32 << 20, wallMilliseconds: 30_000)

    /// A handler that runs a bare numeric `for` of `n` iterations: one FORLOOP
    /// instruction each, so the count is known to within a few instructions.
    static let counted = """
        function handle(req)
          local n = tonumber(req.query)
          for i = 1, n do end
          return "done"
        end
        """

    @Test func freeBudgetIsLazy() {
        #expect(Self.limits.instructions >= SandboxLimits.lazyCountingThreshold)
        #expect(SandboxLimits.lazyCountingTolerance * 20 <= SandboxLimits.lazyCountingThreshold)
    }

    @Test func underTheBudgetLessTheToleranceCompletes() throws {
        let script = try load(Self.counted, limits: Self.limits)
        let iterations = Self.budget - SandboxLimits.lazyCountingTolerance - 10_000
        let result = timed("lazy: \(iterations) instructions") { script.call(path: "/", query: String(iterations)) }
        #expect((try? result.get())?.body == "done", "\(result)")
    }

    @Test func overTheBudgetIsStoppedByTheBudget() throws {
        let script = try load(Self.counted, limits: Self.limits)
        let iterations = Self.budget + 10_000
        let result = timed("lazy: \(iterations) instructions") { script.call(path: "/", query: String(iterations)) }
        let error = failure(result)
        #expect(error?.kind == .limitCPU, "\(result)")
        #expect(error?.message.contains("instruction limit exceeded") == true, "\(result)")
        // The state answers the next call, with the budget back in full.
        #expect((try? script.call(path: "/", query: "1000").get())?.body == "done")
    }

    @Test func loopInsideNestedCoroutinesIsStopped() throws {
        let script = try load("""
            function handle(req)
              local inner = coroutine.wrap(function()
                local i = 0
                while true do i = i + 1; if i % 1000 == 0 then coroutine.yield(i) end end
              end)
              local outer = coroutine.wrap(function()
                while true do coroutine.yield(inner()) end
              end)
              while true do outer() end
            end
            """, limits: Self.limits)
        let error = failure(timed("lazy: nested coroutines") { script.call(path: "/") })
        #expect(error?.kind == .limitCPU, "\(String(describing: error))")
    }

    @Test func manyShortCallsAreNeverCharged() throws {
        // Calls far shorter than a tick: even with ticks landing in some of them,
        // each is charged at most the tolerance, far below its budget.
        let script = try load(Self.counted, limits: Self.limits)
        for _ in 0..<20_000 {
            let result = script.call(path: "/", query: "100")
            guard (try? result.get())?.body == "done" else {
                Issue.record("a short call failed: \(result)")
                return
            }
        }
    }
}
