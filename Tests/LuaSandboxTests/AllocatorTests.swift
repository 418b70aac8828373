import Foundation
import LuaSandbox
import Synchronization
import Testing

/// The sandbox's allocator keeps freed small blocks in a cache per thread, one list
/// per 16-byte size class (bh_state.c). These tests churn blocks of every class,
/// resize them across classes and check every byte they wrote, so a block handed
/// out for more than its class holds would show as a wrong answer or as glibc's
/// abort on a damaged heap.
@Suite struct AllocatorTests {
    /// Builds strings and tables of every small size (and a few past the cache's),
    /// grows tables one element at a time (each growth a resize to the next class),
    /// drops half of them, builds more, then checks every string and table.
    static let churn = """
        local rep, byte, concat = string.rep, string.byte, table.concat
        local function check(kept)
          for i = 1, #kept do
            local item = kept[i]
            if type(item) == "string" then
              local n = #item
              local c = 65 + n % 26
              if item ~= rep(string.char(c), n) then error("string " .. n .. " damaged") end
            else
              for j = 1, item.n do
                if item[j] ~= j * 3 then error("array " .. item.n .. " damaged at " .. j) end
              end
              if item.name ~= "t" .. item.n then error("table " .. item.n .. " lost its name") end
            end
          end
        end
        function handle(req)
          local kept = {}
          for round = 1, 2 do
            for n = 1, 300 do
              kept[#kept + 1] = rep(string.char(65 + n % 26), n)
              local t = { name = "t" .. n % 40, n = n % 40 }
              for j = 1, t.n do t[j] = j * 3 end
              kept[#kept + 1] = t
            end
            -- Every other item dropped: its blocks go back to the lists, and the
            -- next round takes them.
            for i = #kept, 1, -2 do table.remove(kept, i) end
            collectgarbage("count")
          end
          check(kept)
          return tostring(#kept)
        end
        """

    @Test func blocksOfEverySizeKeepWhatWasWritten() throws {
        let script = try load(Self.churn)
        for _ in 0..<50 {
            #expect(script.body() == "450")
        }
        // The allocator still counts every byte: bounded use after many calls.
        #expect(script.memoryUsed > 0 && script.memoryUsed < 4 << 20)
    }

    @Test func statesOnThreadsThatComeAndGo() async throws {
        // Each thread makes its own state, churns, closes it and exits: the blocks
        // it freed (its own and, at close, the state's) are given back at its exit.
        let failures = Mutex<[String]>([])
        let threads = (0..<12).map { index in
            Thread {
                do {
                    let script = try load(Self.churn, name: "thread\(index).lua")
                    for _ in 0..<10 where script.body() != "450" {
                        failures.withLock { $0.append("thread \(index): wrong answer") }
                    }
                } catch {
                    failures.withLock { $0.append("thread \(index): \(error)") }
                }
            }
        }
        for thread in threads { thread.start() }
        let deadline = Date().addingTimeInterval(60)
        while threads.contains(where: { !$0.isFinished }) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(threads.allSatisfy { $0.isFinished })
        #expect(failures.withLock { $0 } == [])
    }

    @Test func theMemoryCapHoldsWithCachedBlocks() throws {
        // A script that fills its cap with small tables fails with the memory limit,
        // and the state serves again after.
        let limits = SandboxLimits(instructions: 0, memoryBytes: 2 << 20, wallMilliseconds: 0)
        let script = try load("""
            function handle(req)
              if req.path == "/fill" then
                local t = {}
                while true do t[#t + 1] = { #t } end
              end
              return "ok"
            end
            """, limits: limits)
        #expect(try #require(failure(script.call(path: "/fill"))).kind == .limitMemory)
        #expect(script.body() == "ok")
        #expect(script.memoryUsed < 2 << 20)
    }
}
