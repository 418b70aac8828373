#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Logging

/// A helper process the supervisor keeps running beside its pools (the ingress,
/// the control plane): started, watched every tick, restarted with backoff when it
/// exits, and adopted from a previous supervisor through its pid file. Touched only
/// on the supervisor queue.
final class SupervisedChild {
    /// Its name in logs (`ingress`, `control`).
    let name: String
    /// `DATA/run/NAME.pid`: how a later supervisor finds it to adopt it.
    let pidFile: String
    /// The live process, or 0.
    var pid: pid_t = 0
    /// Whether this supervisor started it (else adopted: it cannot be waited for).
    var isChild = false
    /// When a restart is due (backing off), monotonic seconds.
    var restartDue: Double?
    /// Restart backoff: 5 quick restarts in 10 s, then it backs off.
    var policy = RestartPolicy(CohortConfiguration.Restart(maxRestarts: 5, windowSeconds: 10))

    init(name: String, pidFile: String) {
        self.name = name
        self.pidFile = pidFile
    }

    /// Whether a process runs (started or adopted).
    var isRunning: Bool { pid > 0 }

    /// The pid a previous supervisor recorded, if that process is alive and its
    /// command line names `command` (a recycled pid is someone else).
    func recordedLiveProcess(command: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1, kill(pid, 0) == 0
        else { return nil }
        let arguments = ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").split(separator: "\0")
        return arguments.contains { $0 == command } ? pid : nil
    }

    /// Records a process this supervisor started.
    func started(_ pid: pid_t) {
        self.pid = pid
        isChild = true
        restartDue = nil
        _ = FileManager.default.createFile(atPath: pidFile, contents: Data("\(pid)\n".utf8), attributes: [.posixPermissions: 0o600])
    }

    /// Records a live process left by a previous supervisor.
    func adopted(_ pid: pid_t) {
        self.pid = pid
        isChild = false
        restartDue = nil
    }

    /// Why the process is gone, when it is (reaped if it was our child); nil while it runs.
    func exitReason() -> String? {
        guard pid > 0 else { return nil }
        if isChild {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result < 0 && errno == ECHILD) {
                return status & 0x7f != 0 ? "killed by signal \(status & 0x7f)" : "exited with \((status >> 8) & 0xff)"
            }
            return nil
        }
        return kill(pid, 0) != 0 && errno == ESRCH ? "the adopted \(name) is gone" : nil
    }

    /// The process is gone: returns whether to start it again now (else at `restartDue`).
    func exited(reason: String, now: Double, logger: Logger) -> Bool {
        pid = 0
        let decision = policy.workerExited(at: now)
        logger.warning("\(name) exited; restarting it", metadata: ["reason": "\(reason)", "delay_s": "\(decision.delay)"])
        if decision.delay == 0 { return true }
        restartDue = now + decision.delay
        return false
    }

    /// Every tick: whether it should be started now (gone and its backoff over).
    func due(now: Double, logger: Logger) -> Bool {
        if let due = restartDue { return due <= now }
        guard let reason = exitReason() else { return false }
        return exited(reason: reason, now: now, logger: logger)
    }

    /// On shutdown: whether a child of ours still runs (reaping it if it has exited).
    func stillRunningChild() -> Bool {
        guard pid > 0, isChild else { return false }
        if exitReason() != nil { pid = 0 }
        return pid > 0
    }

    /// Sends `signal` to the process, if one runs.
    func signal(_ signal: Int32) {
        if pid > 0 { kill(pid, signal) }
    }
}

/// The processes the agent runs beside its pools, on the supervisor's queue.
struct HelperProcesses {
    /// The ingress, when configured.
    var ingress: IngressState?
    /// The control process, when configured.
    var control: ControlState?
}
