// Calls per second through LuaScript.handle, with the free cohort's limits (its
// budget counted lazily, as workers run it), with the same limits counted by the
// hook from the first instruction ("free,hook"), and without any limit (no hook),
// for a trivial and a heavier handler; then PlatformRuntime.evaluate, the call every
// request makes before its script: the default runtime under the platform's limits,
// with no rules and with the rules file given by `--rules FILE` (scripts/bench passes
// bench/rules.json). Run it in release: `swift run -c release SandboxBench`.
//
// Noise between runs on a shared 2-core machine is about ±15%, so the cases are
// compared within one run: each round measures every case once, alternating, and
// the table shows the best round of each (and the median, to show the spread).

import BulkheadCore
import Foundation
import LuaSandbox

#if canImport(Glibc)
import Glibc
#endif

// MARK: Cases

let trivialSource = #"function handle(req) return "hello\n" end"#

let heavySource = """
    function handle(req)
      local t = {}
      for i = 1, 20 do t["field" .. i] = i * 7 end
      local parts = {}
      for k, v in pairs(t) do parts[#parts + 1] = string.format("%s=%d", k, v) end
      parts[#parts + 1] = req.path
      return table.concat(parts, "&")
    end
    """

let freeLimits = SandboxLimits(instructions: 10_000_000, memoryBytes: 32 << 20, wallMilliseconds: 1000)

/// What a case calls: a customer script's `handle`, or the platform runtime's
/// `on_request`.
enum BenchTarget {
    case script(LuaScript)
    case runtime(PlatformRuntime)
}

struct BenchCase {
    let handler: String
    let limitsName: String
    /// Counts every instruction with the hook, as budgets below the lazy
    /// threshold are (the cost lazy counting saves).
    let counted: Bool
    let target: BenchTarget
    let iterations: Int
    var roundsNanosecondsPerCall: [Double] = []
}

/// Bytes that live for the whole run (the "receive buffer" the requests view).
func staticBytes(_ text: String) -> UnsafeRawBufferPointer {
    let utf8 = Array(text.utf8)
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: max(utf8.count, 1), alignment: 1)
    block.copyBytes(from: utf8)
    return UnsafeRawBufferPointer(rebasing: block[0..<utf8.count])
}

let headers = [
    LuaHeader(name: staticBytes("Host"), value: staticBytes("hello.demo-free.localhost:8101")),
    LuaHeader(name: staticBytes("User-Agent"), value: staticBytes("wrk/4.2")),
    LuaHeader(name: staticBytes("Accept"), value: staticBytes("*/*")),
]
let headerBuffer = UnsafeMutableBufferPointer<LuaHeader>.allocate(capacity: headers.count)
_ = headerBuffer.initialize(from: headers)
let request = LuaRequest(
    method: staticBytes("GET"),
    path: staticBytes("/bench"),
    query: staticBytes("a=1"),
    headers: UnsafeBufferPointer(headerBuffer),
    body: staticBytes("")
)

/// Runs `iterations` calls and returns nanoseconds per call; counts the body bytes so
/// the response is really read.
func run(_ benchCase: BenchCase, _ request: LuaRequest, iterations: Int) -> (nanosecondsPerCall: Double, failures: Int) {
    SandboxLimits.lazyInstructionCounting = !benchCase.counted
    defer { SandboxLimits.lazyInstructionCounting = true }
    var failures = 0
    var bytes = 0
    let clock = ContinuousClock()
    let start = clock.now
    switch benchCase.target {
    case .script(let script):
        for _ in 0..<iterations {
            switch script.handle(request, { $0.body.count }) {
            case .success(let count): bytes &+= count
            case .failure: failures += 1
            }
        }
    case .runtime(let runtime):
        for _ in 0..<iterations {
            switch runtime.evaluate(request) {
            case .pass: bytes &+= 1
            case .block, .failed: failures += 1   // The bench request matches no rule.
            }
        }
    }
    let elapsed = start.duration(to: clock.now)
    let (seconds, attoseconds) = elapsed.components
    let nanoseconds = Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    precondition(bytes > 0 || failures > 0)
    return (nanoseconds / Double(iterations), failures)
}

// MARK: Formatting

func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - text.count))
    return right ? padding + text : text + padding
}

func grouped(_ value: Int) -> String {
    let digits = Array(String(value))
    var out = ""
    for (index, digit) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 {
            out.append(",")
        }
        out.append(digit)
    }
    return out
}

func fixed(_ value: Double, decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = Int((value * scale).rounded())
    let whole = scaled / Int(scale)
    let fraction = String(scaled % Int(scale))
    return decimals == 0 ? String(whole) : "\(whole)." + String(repeating: "0", count: decimals - fraction.count) + fraction
}

// MARK: Main

var rounds = 3
if let index = CommandLine.arguments.firstIndex(of: "--rounds"), index + 1 < CommandLine.arguments.count,
   let value = Int(CommandLine.arguments[index + 1]), value > 0 {
    rounds = value
}

var rulesFile: String?
if let index = CommandLine.arguments.firstIndex(of: "--rules"), index + 1 < CommandLine.arguments.count {
    rulesFile = CommandLine.arguments[index + 1]
}

var cases: [BenchCase] = []
do {
    for (handler, source, iterations) in [("trivial", trivialSource, 1_000_000), ("heavy", heavySource, 100_000)] {
        for (limitsName, limits, counted) in [("free", freeLimits, false), ("free,hook", freeLimits, true),
                                              ("unlimited", SandboxLimits.unlimited, false)] {
            let script = try LuaScript(chunkName: "\(handler).lua", source: source, limits: limits)
            cases.append(BenchCase(handler: handler, limitsName: limitsName, counted: counted, target: .script(script),
                                   iterations: iterations))
        }
    }
    // The platform's limits, counted lazily as workers count them.
    let bare = try PlatformRuntime(source: DefaultRuntime.source)
    cases.append(BenchCase(handler: "runtime", limitsName: "platform", counted: false, target: .runtime(bare),
                           iterations: 500_000))
    if let rulesFile {
        guard let data = FileManager.default.contents(atPath: rulesFile) else {
            print("SandboxBench: cannot read \(rulesFile)")
            exit(1)
        }
        let ruled = try PlatformRuntime(source: DefaultRuntime.source)
        try ruled.loadRules(Array(data), validatedBy: RulesValidator.refusal)
        cases.append(BenchCase(handler: "runtime", limitsName: "platform,rules", counted: false,
                               target: .runtime(ruled), iterations: 200_000))
    }
} catch {
    print("SandboxBench: cannot load a benchmark script: \(error)")
    exit(1)
}

for index in cases.indices {
    _ = run(cases[index], request, iterations: cases[index].iterations / 10)  // Warm-up.
}
for _ in 0..<rounds {
    for index in cases.indices {
        let result = run(cases[index], request, iterations: cases[index].iterations)
        if result.failures > 0 {
            print("SandboxBench: \(result.failures) calls of \(cases[index].handler)/\(cases[index].limitsName) failed")
            exit(1)
        }
        cases[index].roundsNanosecondsPerCall.append(result.nanosecondsPerCall)
    }
}

print("LuaScript.handle and PlatformRuntime.evaluate, \(rounds) rounds alternating; best round (median in brackets)")
print(pad("handler", 9) + pad("limits", 11) + pad("calls", 11, right: true)
      + pad("calls/s", 14, right: true) + pad("ns/call", 10, right: true) + pad("(median)", 11, right: true))
for benchCase in cases {
    let sorted = benchCase.roundsNanosecondsPerCall.sorted()
    let best = sorted[0]
    let median = sorted[sorted.count / 2]
    print(pad(benchCase.handler, 9) + pad(benchCase.limitsName, 11)
          + pad(grouped(benchCase.iterations), 11, right: true)
          + pad(grouped(Int(1e9 / best)), 14, right: true)
          + pad(fixed(best, decimals: 0), 10, right: true)
          + pad("(" + fixed(median, decimals: 0) + ")", 11, right: true))
}
