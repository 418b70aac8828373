#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Runs a short-lived helper process to completion, with stdin fed and its output
/// collected while it runs, killing it past `timeout`. Used for the checks the
/// supervisor must not run itself (`check-script`, `check-artifact`, a binary's probe).
///
/// Its writer and reader are threads of their own, not the dispatch pool or Swift's
/// cooperative pool: the callers block dispatch threads while they wait (a storm of
/// uploads arrives on them), and a check whose I/O waits for a pool thread runs out
/// of time while the pool is busy. (swift-subprocess was tried here: its work runs
/// as tasks, and 75 concurrent uploads either starved the cooperative pool or, on a
/// dispatch-backed executor, found no thread left for the children's tasks.)
enum ChildProcess {
    /// Most output kept from one child. The checks print a verdict or an error of a
    /// few hundred bytes; a child that prints more than this is killed rather than
    /// held in the supervisor's memory.
    static let outputLimit = 1024 * 1024

    /// The exit status and everything it printed, or nil when it ran out of time. A
    /// program that cannot be started at all (a directory, no `#!` line, no execute
    /// permission for us) gives status 127 and says why, as a shell would; one killed
    /// by a signal gives 128 plus the signal, and one that prints more than
    /// `outputLimit` bytes gives 125 and says so. Blocks the calling thread.
    static func run(_ path: String, _ arguments: [String], input: String, timeout: Double, mergeStderr: Bool = true)
        -> (status: Int32, text: String)?
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        // A crashing check must not spend seconds printing a backtrace.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = mergeStderr ? stdout : FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return (127, "cannot be started: \(error.localizedDescription)")
        }
        let pid = process.processIdentifier
        Thread {
            try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }.start()
        // The output is read while the child runs: one that prints more than a pipe
        // holds (64 KiB) would otherwise wait for a reader until its deadline.
        let output = Output()
        Thread {
            let reader = stdout.fileHandleForReading
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                if !output.append(chunk) {
                    kill(pid, SIGKILL)
                    break
                }
            }
            output.finished.signal()
        }.start()

        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(2_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        // The end of the output comes after the exit; a grandchild that still holds
        // the pipe counts against the same deadline.
        guard output.finished.wait(timeout: .now() + max(0, deadline.timeIntervalSinceNow)) == .success else { return nil }
        let (data, overflowed) = output.collected
        if overflowed { return (125, "printed more than \(outputLimit) bytes") }
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return (status, String(decoding: data, as: UTF8.self))
    }

    /// What the reader thread collected, handed to the waiting caller.
    private final class Output: @unchecked Sendable {
        /// Signalled once the reader has seen the end of the output (or stopped at the limit).
        let finished = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var data = Data()
        private var overflowed = false

        /// Adds a chunk; false (and nothing kept) once the total passes `outputLimit`.
        func append(_ chunk: Data) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            guard data.count + chunk.count <= ChildProcess.outputLimit else {
                overflowed = true
                return false
            }
            data.append(chunk)
            return true
        }

        var collected: (Data, Bool) {
            lock.lock()
            defer { lock.unlock() }
            return (data, overflowed)
        }
    }
}
