import Dispatch
import Subprocess
import Synchronization
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Runs a short-lived helper process to completion, with stdin fed and its output
/// collected while it runs, killing it past `timeout`. Used for the checks the
/// supervisor must not run itself (`check-script`, `check-artifact`, a binary's probe).
enum ChildProcess {
    /// Most output kept from one child. The checks print a verdict or an error of a
    /// few hundred bytes; a child that prints more than this is cut off and killed
    /// rather than held in the supervisor's memory.
    static let outputLimit = 1024 * 1024

    /// The exit status and everything it printed, or nil when it ran out of time. A
    /// program that cannot be started at all (a directory, no `#!` line, no execute
    /// permission for us) gives status 127 and says why, as a shell would; one killed
    /// by a signal gives 128 plus the signal, and one that prints more than
    /// `outputLimit` bytes gives 125 and says so.
    ///
    /// Blocks the calling thread. The child's tasks run on `executor`'s dispatch
    /// threads, not on Swift's cooperative pool (two threads here): code that blocks
    /// those threads — as parallel tests do — once delayed a 20 ms check by ten
    /// seconds, to its deadline.
    static func run(_ path: String, _ arguments: [String], input: String, timeout: Double, mergeStderr: Bool = true)
        -> (status: Int32, text: String)?
    {
        let outcome = Outcome()
        let finished = DispatchSemaphore(value: 0)
        Task(executorPreference: executor) {
            let result = await runAsync(path, arguments, input: input, timeout: timeout, mergeStderr: mergeStderr)
            outcome.value.withLock { $0 = result }
            finished.signal()
        }
        finished.wait()
        return outcome.value.withLock { $0 }
    }

    /// Where the child's tasks run (their child tasks inherit the preference).
    private static let executor = DispatchTaskExecutor()

    /// A task executor on a concurrent dispatch queue, whose threads grow as needed,
    /// unlike the cooperative pool's.
    private final class DispatchTaskExecutor: TaskExecutor {
        private let queue = DispatchQueue(label: "bulkhead.child-process", attributes: .concurrent)

        func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }
    }

    /// Carries the result from the task back to the blocked caller.
    private final class Outcome: Sendable {
        let value = Mutex<(status: Int32, text: String)?>(nil)
    }

    /// `run` for callers that are tasks already.
    static func runAsync(_ path: String, _ arguments: [String], input: String, timeout: Double, mergeStderr: Bool = true)
        async -> (status: Int32, text: String)?
    {
        // The child and a timer race; whichever ends first cancels the other. A
        // cancelled run kills the child (Subprocess's teardown ends with SIGKILL) and
        // reaps it before the group returns, so nothing outlives the call.
        await withTaskGroup(of: (status: Int32, text: String)??.self) { group in
            group.addTask {
                mergeStderr
                    ? await collect(path, arguments, input: input, error: .combinedWithOutput)
                    : await collect(path, arguments, input: input, error: .discarded)
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                return .none
            }
            let first = await group.next() ?? .none
            group.cancelAll()
            return first ?? nil
        }
    }

    /// Runs the child once; its output is read while it runs, so one that prints
    /// more than a pipe holds (64 KiB on Linux) does not stall waiting for a reader.
    /// Returns nil only when cancelled (the deadline passed).
    private static func collect(_ path: String, _ arguments: [String], input: String,
                                error: some ErrorOutputProtocol) async -> (status: Int32, text: String)?
    {
        do {
            let result = try await Subprocess.run(
                .path(FilePath(path)),
                arguments: Arguments(arguments),
                // A crashing check must not spend seconds printing a backtrace.
                environment: .inherit.updating(["SWIFT_BACKTRACE": "enable=no"]),
                input: .array(Array(input.utf8)),
                output: .string(limit: outputLimit),
                error: error)
            if Task.isCancelled { return nil }
            switch result.terminationStatus {
            case .exited(let code): return (code, result.standardOutput)
            case .signaled(let signal): return (128 + signal, result.standardOutput)
            }
        } catch let failure as SubprocessError {
            if Task.isCancelled { return nil }
            switch failure.code {
            case .outputLimitExceeded:
                return (125, "printed more than \(outputLimit) bytes")
            default:
                return (127, "cannot be started: \(failure)")
            }
        } catch {
            if Task.isCancelled { return nil }
            return (127, "cannot be started: \(error)")
        }
    }
}
