#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import Control

/// The helper that runs the checks' child processes, against real children: output
/// larger than a pipe holds comes back whole, output past the cap is refused, a child
/// that hangs is killed at its deadline and reported as out of time, one that cannot
/// start or dies of a signal is reported as a shell would, and nothing is left running.
@Suite struct ChildProcessTests {
    /// The helper's answer and how long it took, timed on the helper's own thread: an
    /// async test's own resumption waits for Swift's cooperative threads, which the
    /// parallel unit suites keep busy for seconds, and that wait is not the helper's.
    /// (The helper still waits for them briefly, see `ChildProcessExecutor`, and for
    /// the CPU that the parallel suites share: bounds here are loose.)
    static func timed(_ path: String, _ arguments: [String], timeout: Double) async
        -> (output: (status: Int32, text: String)?, seconds: Double)
    {
        await withTaskExecutorPreference(ChildProcessExecutor.shared) {
            let started = Date()
            let output = await ChildProcess.run(path, arguments, input: "", timeout: timeout)
            return (output, Date().timeIntervalSince(started))
        }
    }

    /// A child that prints 200 KiB (more than the 64 KiB a pipe holds) and exits is a
    /// finished child with all of its output, not one that ran out of time (nil).
    @Test func largeOutputIsNotATimeout() async throws {
        let output = try #require(await ChildProcess.run("/bin/sh", ["-c", "exec head -c 200000 /dev/zero"], input: "", timeout: 10))
        #expect(output.status == 0)
        #expect(output.text.utf8.count == 200_000)
    }

    /// Input and output of 200 KiB each at once: the child is fed while its output is
    /// read, so neither side waits for the other.
    @Test func largeInputAndOutputTogether() async throws {
        let input = String(repeating: "0123456789abcdef", count: 200_000 / 16)
        let output = try #require(await ChildProcess.run("/bin/cat", [], input: input, timeout: 10))
        #expect(output.status == 0)
        #expect(output.text == input)
    }

    /// A child that ends without reading its input answers with its own status; the
    /// input it left unread is not an error of the run. (`bulkhead control` ignores
    /// SIGPIPE at start; the test process does the same, or the refused write would
    /// end it.)
    @Test func aChildThatLeavesItsInputUnreadAnswersItself() async throws {
        signal(SIGPIPE, SIG_IGN)
        let input = String(repeating: "x", count: 500_000)
        let output = try #require(await ChildProcess.run("/bin/sh", ["-c", "echo early; exit 3"], input: input, timeout: 10))
        #expect(output.status == 3)
        #expect(output.text == "early\n")
    }

    /// A child that never finishes is reported as out of time near its deadline, and
    /// it is killed: its process is gone (killed and reaped) when the call returns.
    @Test func hangingChildTimesOutAndIsKilled() async throws {
        let pidFile = Self.temporaryPath("pid")
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let (output, elapsed) = await Self.timed("/bin/sh", ["-c", "echo $$ > '\(pidFile)'; exec sleep 60"], timeout: 1)
        #expect(output == nil)
        // Ended by its 1 s deadline, not by the child's own 60 s.
        #expect(elapsed >= 0.9)
        #expect(elapsed < 50)
        let pid = try Self.readPID(pidFile)
        // Signal 0 checks for existence only: ESRCH once the child is killed and reaped
        // (a zombie not yet reaped still exists).
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
    }

    /// A child that exits while a process it started still holds its output pipe
    /// answers at its exit, not as out of time (nil) at the deadline.
    @Test func aGrandchildHoldingTheOutputDoesNotHoldTheAnswer() async throws {
        let pidFile = Self.temporaryPath("pid")
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let answer = await ChildProcess.run("/bin/sh", ["-c", "sleep 30 & echo $! > '\(pidFile)'; echo answered"], input: "", timeout: 10)
        // The grandchild is the test's to end.
        let grandchild = try Self.readPID(pidFile)
        kill(grandchild, SIGKILL)
        let output = try #require(answer)
        #expect(output.status == 0)
        #expect(output.text == "answered\n")
    }

    /// Output past the limit (1 MiB) is refused with status 125 and a message that
    /// says so; the child is stopped rather than read without end.
    @Test func outputPastTheLimitIsRefused() async throws {
        let output = try #require(await ChildProcess.run("/bin/sh", ["-c", "exec head -c 2000000 /dev/zero"], input: "", timeout: 10))
        #expect(output.status == 125)
        #expect(output.text == "printed more than \(ChildProcess.outputLimit) bytes")
    }

    /// A program that cannot be started at all gives 127 and says why, as a shell
    /// would: no such file, a directory, a file that is neither ELF nor `#!`.
    @Test func anUnstartableProgramGives127() async throws {
        let notAProgram = Self.temporaryPath("txt")
        defer { try? FileManager.default.removeItem(atPath: notAProgram) }
        try "just text\n".write(toFile: notAProgram, atomically: true, encoding: .utf8)
        #expect(chmod(notAProgram, 0o755) == 0)
        for path in ["/nonexistent/check", FileManager.default.temporaryDirectory.path, notAProgram] {
            let output = try #require(await ChildProcess.run(path, ["probe"], input: "", timeout: 10))
            #expect(output.status == 127, "\(path): \(output)")
            #expect(output.text.hasPrefix("cannot be started: "), "\(path): \(output.text)")
        }
    }

    /// A child killed by a signal gives 128 plus the signal, as a shell would.
    @Test func aChildKilledByASignalGives128PlusIt() async throws {
        let output = try #require(await ChildProcess.run("/bin/sh", ["-c", "kill -TERM $$"], input: "", timeout: 10))
        #expect(output.status == 128 + SIGTERM)
    }

    /// The child runs with Swift's backtracer off (a crashing check must not spend
    /// seconds printing a backtrace), and otherwise this process's environment.
    @Test func theChildRunsWithoutTheBacktracer() async throws {
        let output = try #require(await ChildProcess.run("/bin/sh", ["-c", "printf '%s|%s' \"$SWIFT_BACKTRACE\" \"$HOME\""],
                                                         input: "", timeout: 10))
        #expect(output.text == "enable=no|\(ProcessInfo.processInfo.environment["HOME"] ?? "")")
    }

    /// What a child prints on stderr is part of its text unless the caller asks for
    /// stdout alone.
    @Test func stderrMergedOnlyWhenAsked() async throws {
        let merged = try #require(await ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], input: "", timeout: 10))
        #expect(merged.status == 3)
        #expect(merged.text.contains("out") && merged.text.contains("err"))
        let alone = try #require(await ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2"], input: "", timeout: 10,
                                                        mergeStderr: false))
        #expect(alone.text == "out\n")
    }

    /// As many children at once as an upload storm starts (75), each fed and read:
    /// every one answers, with its own output, and none runs out of time. Nothing
    /// waits on a thread, so Swift's few cooperative threads carry them all.
    @Test func seventyFiveChildrenAtOnceAllAnswer() async throws {
        let answers = await withTaskGroup(of: (Int, (status: Int32, text: String)?).self) { group in
            for index in 0..<75 {
                group.addTask {
                    (index, await ChildProcess.run("/bin/sh", ["-c", "cat; echo \" \(index)\""], input: "child", timeout: 20))
                }
            }
            var answers: [Int: (status: Int32, text: String)?] = [:]
            for await (index, answer) in group { answers[index] = answer }
            return answers
        }
        #expect(answers.count == 75)
        for (index, answer) in answers {
            #expect(answer?.status == 0 && answer?.text == "child \(index)\n", "child \(index): \(String(describing: answer))")
        }
    }

    static func temporaryPath(_ suffix: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("child-process-\(UUID().uuidString).\(suffix)").path
    }

    static func readPID(_ file: String) throws -> pid_t {
        let written = try String(contentsOfFile: file, encoding: .utf8)
        return try #require(pid_t(written.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}
