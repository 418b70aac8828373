@testable import LuaSandbox
import CLuaSandbox
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The watchdog on its own, with armed sections that sleep instead of running Lua.
///
/// The real case — `string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')`
/// stuck in C for hours — cannot end inside a test process: the watchdog's only
/// remedy is ending the process, and the call never returns. The process-level tests
/// (`bulkhead try`, the worker) cover it with an `onExpire` that exits.
@Suite struct WatchdogTests {
    @Test func firesOnceWhenASectionOverruns() throws {
        let expiries = Recorder<String>()
        let elapsed = Recorder<Duration>()
        let watchdog = Watchdog(margin: .milliseconds(20)) { name, time in
            expiries.record(name)
            elapsed.record(time)
        }
        let label = watchdog.register(label: "spin.lua")
        let now = bh_now_ns()
        let section = watchdog.arm(label: label, now: now, deadline: now + 30_000_000)
        sleepFully(microseconds: 300_000)  // A "C call" that runs well past deadline + margin.
        watchdog.disarm(section)
        #expect(expiries.values == ["spin.lua"])
        #expect((elapsed.values.first ?? .zero) >= .milliseconds(50))
        watchdog.unregister(label: label)
    }

    @Test func staysQuietForSectionsWithinTheirDeadline() throws {
        let expiries = Recorder<String>()
        let watchdog = Watchdog(margin: .milliseconds(10)) { name, _ in expiries.record(name) }
        let label = watchdog.register(label: "fast.lua")
        for _ in 0..<1000 {
            let now = bh_now_ns()
            let section = watchdog.arm(label: label, now: now, deadline: now + 50_000_000)
            watchdog.disarm(section)
        }
        sleepFully(microseconds: 100_000)
        #expect(expiries.values.isEmpty)
    }

    @Test func nestedSectionRestoresTheOuterOne() throws {
        let expiries = Recorder<String>()
        let watchdog = Watchdog(margin: .milliseconds(10)) { name, _ in expiries.record(name) }
        let outer = watchdog.register(label: "outer.lua")
        let inner = watchdog.register(label: "inner.lua")
        let now = bh_now_ns()
        let outerSection = watchdog.arm(label: outer, now: now, deadline: now + 20_000_000)
        let innerSection = watchdog.arm(label: inner, now: now, deadline: now + 10_000_000_000)
        watchdog.disarm(innerSection)
        sleepFully(microseconds: 200_000)
        watchdog.disarm(outerSection)
        #expect(expiries.values == ["outer.lua"])
    }

    @Test func scriptsArmItAroundEveryCall() throws {
        // A script with a watchdog: ordinary calls never trip it; a call that the hook
        // stops at its deadline does not either (it ends before the margin).
        let expiries = Recorder<String>()
        let watchdog = Watchdog(margin: .milliseconds(500)) { name, _ in expiries.record(name) }
        do {
            let script = try LuaScript(chunkName: "guarded.lua", source: """
                function handle(req)
                  if req.path == "/spin" then while true do end end
                  return "ok"
                end
                """, limits: SandboxLimits(instructions: 1 << 50, memoryBytes: 32 << 20, wallMilliseconds: 50), watchdog: watchdog)
            for _ in 0..<100 {
                #expect(script.body() == "ok")
            }
            let error = try #require(failure(script.call(path: "/spin")))
            #expect(error.kind == .limitWall)
        }
        sleepFully(microseconds: 100_000)
        #expect(expiries.values.isEmpty)
    }

    @Test func longCCallTripsItThroughAScript() throws {
        // A C call that runs past deadline + margin but does end (a small version
        // of the string.find case): the watchdog reports it
        // with the chunk name while it runs, and the hook fails the request with
        // limit-wall as soon as Lua code runs again.
        let expiries = Recorder<String>()
        let watchdog = Watchdog(margin: .milliseconds(5)) { name, _ in expiries.record(name) }
        let script = try LuaScript(chunkName: "find.lua", source: """
            function handle(req)
              -- About 0.1 s inside one C call on this kind of machine; each 'a*' more
              -- multiplies that by about 3 (the 40/40 case runs for hours).
              local found = string.find(string.rep('a', 18), string.rep('a*', 9) .. 'b')
              return tostring(found)
            end
            """, limits: SandboxLimits(instructions: 1 << 50, memoryBytes: 32 << 20, wallMilliseconds: 5), watchdog: watchdog)
        let result = timed("long C calls") { script.call() }
        let error = try #require(failure(result))
        #expect(error.kind == .limitWall)
        #expect(expiries.values.first == "find.lua")
    }
}

/// Sleeps the whole time even when a signal cuts `usleep` short: a test thread that
/// ran a lazily counted call before gets timer ticks for a few milliseconds after
/// it (see bh_tick.c), and `usleep` returns early on each.
func sleepFully(microseconds: UInt32) {
    let clock = ContinuousClock()
    let end = clock.now.advanced(by: .microseconds(Int(microseconds)))
    while clock.now < end {
        let left = clock.now.duration(to: end)
        let (seconds, attoseconds) = left.components
        usleep(UInt32(clamping: seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }
}
