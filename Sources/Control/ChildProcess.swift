#if canImport(Glibc)
import Glibc
#endif
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Runs a short-lived helper process to completion, with stdin fed and its output
/// collected while it runs, killing it past `timeout`. Used for the checks the
/// control plane must not run itself (`check-script`, `check-artifact`, a binary's
/// probe).
///
/// Built on swift-subprocess, whose waits are suspensions: the child's exit and its
/// pipes are watched by swift-subprocess's own epoll thread, and a caller's task holds
/// no thread while the child runs. Its tasks run on `ChildProcessExecutor`'s thread,
/// not on Swift's cooperative threads. Callers must await it and never block a thread
/// to wait for it: a storm of 75 uploads whose callers blocked threads waiting for
/// these tasks left them no thread to run on (2 uploads answered in 60 s).
enum ChildProcess {
    /// Most output kept from one child. The checks print a verdict or an error of a
    /// few hundred bytes; a child that prints more than this is killed rather than
    /// held in memory.
    static let outputLimit = 1024 * 1024

    /// The exit status and everything it printed, or nil when it ran out of time (it
    /// is then killed and reaped before this returns). A program that cannot be
    /// started at all (a directory, no `#!` line, no execute permission for us)
    /// gives status 127 and says why, as a shell would; one killed by a signal gives
    /// 128 plus the signal, and one that prints more than `outputLimit` bytes gives
    /// 125 and says so.
    static func run(_ path: String, _ arguments: [String], input: String, timeout: Double, mergeStderr: Bool = true)
        async -> (status: Int32, text: String)?
    {
        await withTaskExecutorPreference(ChildProcessExecutor.shared) {
            // The child and a timer race. The child's end cancels the timer; the
            // deadline cancels the run, which kills the child (swift-subprocess's
            // teardown sends SIGKILL) and reaps it, and the group waits for that. The
            // verdict is the child's, not the race's: a child that had ended on its own
            // by the deadline (its run only waiting to be wrapped up, which takes a
            // cooperative thread, see `ChildProcessExecutor`) still gives its answer.
            await withTaskGroup(of: Finish.self) { group in
                group.addTask {
                    .ended(mergeStderr
                        ? await collect(path, arguments, input: input, error: .combinedWithOutput)
                        : await collect(path, arguments, input: input, error: .discarded))
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(timeout))
                    return .deadline
                }
                var answer: (status: Int32, text: String)?
                for await finish in group {
                    if case .ended(let result) = finish { answer = result }
                    group.cancelAll()
                }
                return answer
            }
        }
    }

    /// Which side of the race ended.
    private enum Finish: Sendable {
        /// The run, with the child's answer, or nil when the deadline's kill ended it.
        case ended((status: Int32, text: String)?)
        case deadline
    }

    /// Runs the child once. Its output is read while it runs, so one that prints more
    /// than a pipe holds (64 KiB on Linux) does not stall waiting for a reader. Nil
    /// when the run was cancelled (the deadline) and the child did not end on its own.
    private static func collect(_ path: String, _ arguments: [String], input: String,
                                error: some ErrorOutputProtocol) async -> (status: Int32, text: String)?
    {
        do {
            let result = try await Subprocess.run(
                .path(FilePath(path)),
                arguments: Arguments(arguments),
                // A crashing check must not spend seconds printing a backtrace.
                environment: .inherit.updating(["SWIFT_BACKTRACE": "enable=no"]),
                input: .inputWriter,
                output: .string(limit: outputLimit),
                error: error
            ) { execution in
                // Fed here rather than by swift-subprocess's collected input, which
                // fails the whole run when the child ends without reading all of it:
                // what such a child answered is the result, not the broken pipe.
                let writer = execution.standardInputWriter
                if !input.isEmpty { _ = try? await writer.write(Array(input.utf8)) }
                try? await writer.finish()
            }
            switch result.terminationStatus {
            case .exited(let code): return (code, result.standardOutput)
            case .signaled(SIGKILL) where Task.isCancelled: return nil
            case .signaled(let signal): return (128 + signal, result.standardOutput)
            }
        } catch let failure as SubprocessError where failure.code == .outputLimitExceeded {
            return (125, "printed more than \(outputLimit) bytes")
        } catch {
            if Task.isCancelled { return nil }
            return (127, "cannot be started: \(error)")
        }
    }
}
