import ArgumentParser
import Foundation
import BulkheadCore
import CBulkheadPosix
import Worker

/// `bulkhead worker`: one worker process. Started by the supervisor only; its
/// arguments and descriptors are a versioned contract (see `WorkerSpawner`).
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Serve one pool (started by the supervisor only).",
        shouldDisplay: false
    )

    @Option(help: "Control protocol version the supervisor speaks.")
    var `protocol`: Int
    @Option(help: "The pool to serve.")
    var pool: String
    @Option(help: "The worker's slot in its pool.")
    var slot: Int
    @Option(help: "Unique instance number.")
    var instance: UInt64
    @OptionGroup var dataOptions: DataOptions

    func validate() throws {
        guard self.protocol == controlProtocolVersion else {
            throw ValidationError("this worker speaks control protocol \(controlProtocolVersion), not \(self.protocol)")
        }
        guard ResourceName.isValid(pool) else { throw ValidationError("'\(pool)' is not a pool name") }
    }

    func run() throws {
        // Keep only stdin/out/err, the pool socket (3) and the control listener (4).
        bh_close_from(5)
        // Fault injection for the tests of crash loops: a worker of the named pool
        // exits at once, as a broken build would.
        if let pool = ProcessInfo.processInfo.environment["BULKHEAD_FAULT_EXIT_POOL"], pool == self.pool {
            throw ExitCode(3)
        }
        var options = WorkerOptions(pool: pool, slot: slot, instance: instance, data: DataDirectory(dataOptions.data))
        options.binaryVersion = ProcessInfo.processInfo.environment["BULKHEAD_WORKER_BINARY_VERSION"].flatMap { Int($0) } ?? 0
        let status = try WorkerProcess(options: options).run()
        throw ExitCode(status)
    }
}
