import LuaSandbox
import Synchronization
import Testing

/// The free cohort's limits (cohorts/free.toml).
let freeLimits = SandboxLimits(instructions: 10_000_000, memoryBytes: 32 << 20, wallMilliseconds: 1000)

/// A response copied out of the sandbox's views, for assertions.
struct CopiedResponse: Equatable {
    var status: Int
    var headers: [String: String]
    var body: String
    /// Every header line, in order (`headers` keeps one value per name); left out
    /// of `==`, which compares what the other tests spell out.
    var lines: [String] = []

    static func == (left: CopiedResponse, right: CopiedResponse) -> Bool {
        left.status == right.status && left.headers == right.headers && left.body == right.body
    }
}

/// Owns copies of the bytes a `LuaRequest` views, for as long as a test needs them.
final class ByteArena {
    private var blocks: [UnsafeMutableRawBufferPointer] = []

    func bytes(_ text: String) -> UnsafeRawBufferPointer {
        let utf8 = Array(text.utf8)
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: max(utf8.count, 1), alignment: 1)
        block.copyBytes(from: utf8)
        blocks.append(block)
        return UnsafeRawBufferPointer(rebasing: block[0..<utf8.count])
    }

    deinit {
        for block in blocks {
            block.deallocate()
        }
    }
}

extension LuaScript {
    /// Calls `handle` with a request made of strings and copies the response.
    func call(
        method: String = "GET",
        path: String = "/",
        query: String = "",
        headers: [(String, String)] = [],
        body: String = "",
        startedAt: UInt64 = 0
    ) -> Result<CopiedResponse, ScriptError> {
        let arena = ByteArena()
        let luaHeaders = headers.map { LuaHeader(name: arena.bytes($0.0), value: arena.bytes($0.1)) }
        return luaHeaders.withUnsafeBufferPointer { headerBuffer in
            let request = LuaRequest(
                method: arena.bytes(method),
                path: arena.bytes(path),
                query: arena.bytes(query),
                headers: headerBuffer,
                body: arena.bytes(body)
            )
            return handle(request, startedAt: startedAt) { response in
                var copied = CopiedResponse(status: response.status, headers: [:], body: String(decoding: response.body, as: UTF8.self))
                for index in 0..<response.headerCount {
                    let header = response.header(at: index)
                    copied.headers[String(decoding: header.name, as: UTF8.self)] = String(decoding: header.value, as: UTF8.self)
                    copied.lines.append(String(decoding: header.name, as: UTF8.self) + ": " + String(decoding: header.value, as: UTF8.self))
                }
                return copied
            }
        }
    }

    /// The body of a successful call, or "error <kind>: <message>".
    func body(path: String = "/") -> String {
        switch call(path: path) {
        case .success(let response): return response.body
        case .failure(let error): return "error \(error)"
        }
    }
}

/// Loads a script that must load.
func load(_ source: String, name: String = "test.lua", limits: SandboxLimits = freeLimits, log: @escaping (String) -> Void = { _ in }) throws -> LuaScript {
    try LuaScript(chunkName: name, source: source, limits: limits, log: log)
}

/// The error a failing call returned, or nil (and a recorded issue) if it succeeded.
func failure(_ result: Result<CopiedResponse, ScriptError>, sourceLocation: SourceLocation = #_sourceLocation) -> ScriptError? {
    switch result {
    case .success(let response):
        Issue.record("expected an error, got \(response)", sourceLocation: sourceLocation)
        return nil
    case .failure(let error):
        return error
    }
}

/// The error `LuaScript.init` threw, or nil (and a recorded issue) if it loaded.
func loadFailure(_ source: String, name: String = "test.lua", limits: SandboxLimits = freeLimits, sourceLocation: SourceLocation = #_sourceLocation) -> ScriptError? {
    do {
        _ = try LuaScript(chunkName: name, source: source, limits: limits)
        Issue.record("expected the script not to load", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Runs `body`, prints how long it took under `label`, and returns its result. Times
/// are printed, never asserted (a benchmark is not a test).
func timed<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
    let clock = ContinuousClock()
    let start = clock.now
    let result = try body()
    print("[time] \(label): \(start.duration(to: clock.now))")
    return result
}

/// A well-behaved script whose state counts requests in a global: proof that other
/// scripts' failures leave warm states alone.
final class Counter {
    let script: LuaScript
    private(set) var expected = 0

    init() throws {
        script = try load("""
            count = 0
            function handle(req)
              count = count + 1
              return tostring(count)
            end
            """, name: "counter.lua")
    }

    /// One request; expects the count to go on from where it was.
    func tick(sourceLocation: SourceLocation = #_sourceLocation) {
        expected += 1
        #expect(script.body() == String(expected), sourceLocation: sourceLocation)
    }
}

/// Collects values from any thread.
final class Recorder<Value: Sendable>: Sendable {
    private let storage = Mutex<[Value]>([])

    func record(_ value: Value) {
        storage.withLock { $0.append(value) }
    }

    var values: [Value] { storage.withLock { $0 } }
}
