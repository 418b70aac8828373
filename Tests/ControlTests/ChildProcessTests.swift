#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import Control

/// The helper that runs the checks' child processes, against real children: output
/// larger than a pipe holds comes back whole, a child that hangs is killed at its
/// deadline and reported as out of time, and nothing is left running.
@Suite struct ChildProcessTests {
    /// The helper, called the way the supervisor calls it: blocking this thread. The
    /// tests are synchronous so that what they time is the call alone (an async
    /// test's resumption waits for the cooperative pool, which parallel tests keep busy).
    static func run(_ path: String, _ arguments: [String], input: String = "", timeout: Double = 10,
                    mergeStderr: Bool = true) -> (status: Int32, text: String)?
    {
        ChildProcess.run(path, arguments, input: input, timeout: timeout, mergeStderr: mergeStderr)
    }

    /// A child that prints 200 KiB (more than the 64 KiB a pipe holds) and exits is a
    /// finished child with all of its output, not one that ran out of time.
    @Test func largeOutputIsNotATimeout() throws {
        let started = Date()
        let output = try #require(Self.run("/bin/sh", ["-c", "exec head -c 200000 /dev/zero"], input: "", timeout: 10))
        #expect(output.status == 0)
        #expect(output.text.utf8.count == 200_000)
        #expect(Date().timeIntervalSince(started) < 5)
    }

    /// Input and output of 200 KiB each at once: the child is fed while its output is
    /// read, so neither side waits for the other.
    @Test func largeInputAndOutputTogether() throws {
        let input = String(repeating: "0123456789abcdef", count: 200_000 / 16)
        let output = try #require(Self.run("/bin/cat", [], input: input, timeout: 10))
        #expect(output.status == 0)
        #expect(output.text == input)
    }

    /// A child that never finishes is reported as out of time near its deadline, and
    /// it is killed: its process is gone when the call returns.
    @Test func hangingChildTimesOutAndIsKilled() throws {
        let pidFile = FileManager.default.temporaryDirectory
            .appendingPathComponent("child-process-\(UUID().uuidString).pid").path
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let started = Date()
        let output = Self.run("/bin/sh", ["-c", "echo $$ > '\(pidFile)'; exec sleep 60"], input: "", timeout: 1)
        let elapsed = Date().timeIntervalSince(started)
        #expect(output == nil)
        #expect(elapsed >= 0.9)
        #expect(elapsed < 10)
        let written = try String(contentsOfFile: pidFile, encoding: .utf8)
        let pid = try #require(pid_t(written.trimmingCharacters(in: .whitespacesAndNewlines)))
        // Signal 0 checks for existence only: ESRCH once the child is killed and reaped.
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
    }

    /// Output past the limit (1 MiB) is refused with a message that says so; the
    /// child is stopped rather than read without end.
    @Test func outputPastTheLimitIsRefused() throws {
        let output = try #require(Self.run("/bin/sh", ["-c", "exec head -c 2000000 /dev/zero"], input: "", timeout: 10))
        #expect(output.status != 0)
        #expect(output.text.contains("printed more than"))
    }

    /// What a child prints on stderr is part of its text unless the caller asks for
    /// stdout alone.
    @Test func stderrMergedOnlyWhenAsked() throws {
        let merged = try #require(Self.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], input: "", timeout: 10))
        #expect(merged.status == 3)
        #expect(merged.text.contains("out") && merged.text.contains("err"))
        let alone = try #require(Self.run("/bin/sh", ["-c", "echo out; echo err >&2"], input: "", timeout: 10,
                                                  mergeStderr: false))
        #expect(alone.text == "out\n")
    }
}
