#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// `bulkhead try`, as a customer runs it: the real binary, the repository's cohorts.
@Suite(.serialized) struct TryCommandTests {
    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        /// Ended by a signal (a crash), not an exit.
        var signalled: Bool
    }

    func run(_ source: String, _ arguments: [String] = []) throws -> Outcome {
        let directory = FileManager.default.temporaryDirectory.path + "/bulkhead-try-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = directory + "/script.lua"
        try source.write(toFile: script, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: HostHarness.locateBinary())
        process.arguments = ["try", script, "--cohorts", Self.cohorts] + arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let started = Date()
        try process.run()
        // Generous deadline: ten times the slowest limit involved.
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return Outcome(
            status: process.terminationStatus,
            stdout: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
            stderr: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
            seconds: Date().timeIntervalSince(started),
            signalled: process.terminationReason == .uncaughtSignal)
    }

    /// The repository's cohorts folder (tests run from the package root).
    static var cohorts: String {
        var directory = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { directory = directory.deletingLastPathComponent() }
        return directory.appendingPathComponent("cohorts").path
    }

    @Test func printsTheResponseLikeCurl() throws {
        let outcome = try run("""
            function handle(req)
              return { status = 201, headers = { ["x-seen"] = req.headers["x-name"] .. ":" .. req.query }, body = req.method .. " " .. req.path .. " " .. req.body }
            end
            """, ["--method", "POST", "--path", "/a/b?q=1", "--header", "X-Name: ada", "--body", "payload"])
        #expect(outcome.status == 0)
        #expect(outcome.stdout.hasPrefix("HTTP/1.1 201 Created\r\n"))
        #expect(outcome.stdout.contains("x-seen: ada:q=1\r\n"))
        #expect(outcome.stdout.hasSuffix("\r\n\r\nPOST /a/b payload"))
    }

    @Test func syntaxErrorNamesTheLine() throws {
        let outcome = try run("function handle(req)\n  return 'ok'\n\nlocal = 3\nend\n")
        print("syntax error: \(outcome.stderr)")
        #expect(outcome.status == 1)
        #expect(outcome.stderr.hasPrefix("syntax: "))
        #expect(outcome.stderr.contains("script.lua:4:"))
        #expect(outcome.stdout.isEmpty)
    }

    @Test(arguments: [
        ("function handle(req) while true do end end", "limit-cpu"),
        ("while true do end\nfunction handle(req) return 'x' end", "limit-cpu"),
        ("function handle(req) local t = {} while true do t[#t + 1] = string.rep('x', 1024) end end", "limit-memory"),
        ("function handle(req) error('boom') end", "script-error"),
        ("function handle(req) return { status = 200, body = {} } end", "script-error"),
    ])
    func limitsEndTheRequestWithTheirKind(source: String, kind: String) throws {
        let outcome = try run(source)
        print("\(kind): exit \(outcome.status) after \(String(format: "%.2f", outcome.seconds)) s: \(outcome.stderr)")
        #expect(outcome.status == 1)
        #expect(outcome.stderr.hasPrefix("\(kind): "))
    }

    /// The hook cannot interrupt a long C call: the watchdog ends `try` with limit-wall.
    @Test func pathologicalPatternEndsWithLimitWall() throws {
        let outcome = try run("""
            function handle(req)
              return tostring(string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b'))
            end
            """)
        print("pathological pattern: exit \(outcome.status) after \(String(format: "%.2f", outcome.seconds)) s: \(outcome.stderr)")
        #expect(outcome.status == 1)
        #expect(outcome.stderr.hasPrefix("limit-wall: "))
        #expect(outcome.seconds < 10)
    }
}
