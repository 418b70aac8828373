import Foundation

/// The task executor the checks' child processes run their tasks on: one thread of
/// its own, which nothing else uses and nothing blocks.
///
/// `ChildProcess.run` prefers it, so its own tasks and swift-subprocess's child tasks
/// (feeding stdin, reading output, waiting for the exit, the deadline's kill and the
/// reap) run here between their waits. Their work here is short: the waits are
/// suspensions, watched by swift-subprocess's own threads, and the spawn runs on a
/// thread of swift-subprocess's. So a check depends little on Swift's cooperative
/// threads (two on a 2-core machine), which other work may keep busy: in the parallel
/// unit tests, whose synchronous tests hold them for seconds, a child printing
/// 200 KiB took 19.6 s with its tasks on the cooperative threads (timed from the test's
/// task) and 8.6 s with them here (timed here), on 2 shared cores. Not zero:
/// swift-subprocess ends each run through an unstructured task (`Task {}`),
/// which does not inherit a task executor preference and so waits for a cooperative
/// thread, once per run and briefly.
final class ChildProcessExecutor: TaskExecutor, @unchecked Sendable {
    /// The one executor of the process; its thread lives as long as the process.
    static let shared = ChildProcessExecutor()

    /// Guards `jobs`; the thread waits on it for work.
    private let condition = NSCondition()
    /// Jobs enqueued and not yet run, oldest first (under `condition`).
    private var jobs: [UnownedJob] = []

    private init() {
        let thread = Thread { [self] in runJobs() }
        thread.name = "bulkhead.child-process"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The thread's loop: runs what is enqueued, in order, and sleeps while nothing is.
    private func runJobs() -> Never {
        let executor = asUnownedTaskExecutor()
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: executor) }
        }
    }
}
