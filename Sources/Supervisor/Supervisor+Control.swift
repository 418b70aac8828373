#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation

/// How `serve` runs its control plane: `bulkhead control` as a supervised child.
public struct ControlChildConfiguration: Sendable {
    /// The arguments after `control` (`--data`, `--cohorts`, `--api`, `--scripts`,
    /// `--demo`, the API's connection options).
    public var arguments: [String]
    /// Seconds between health checks (`GET /healthz` on control.sock).
    public var healthInterval = 1.0
    /// Longest one health check may take.
    public var healthTimeout = 0.5
    /// Health checks missed in a row before the process is killed and replaced.
    public var missesBeforeKill = 3
    /// Seconds a new process has to answer its first check (it opens the store,
    /// seeds `--demo` and stores the scripts directory before it listens).
    public var startGrace = 20.0

    /// A configuration passing `arguments` to `bulkhead control`.
    public init(arguments: [String]) {
        self.arguments = arguments
    }
}

/// The control process as the supervisor sees it. Touched only on the queue.
final class ControlState {
    let configuration: ControlChildConfiguration
    /// The process, supervised like the ingress.
    let process: SupervisedChild
    /// Where its API listens, from its last answered health check.
    var api: String?
    /// Whether its last health check answered.
    var up = false
    /// Checks missed in a row.
    var missed = 0
    /// Whether the current process ever answered.
    var answered = false
    /// When the current process was started or adopted, monotonic seconds.
    var since = 0.0
    /// A check in flight (one at a time).
    var checking = false
    /// When the last check started.
    var lastCheck = -Double.infinity
    /// A process killed for not answering, until it is gone: nothing new starts
    /// before (it may hold control.lock, and two drivers never run).
    var killed: pid_t?
    /// Processes started after the first.
    var restarts = 0
    /// Whether a process was started before (the next start is a restart).
    var startedOnce = false

    init(configuration: ControlChildConfiguration, pidFile: String) {
        self.configuration = configuration
        process = SupervisedChild(name: "control", pidFile: pidFile)
    }
}

extension Supervisor {
    // MARK: - Start and takeover

    /// Adopts the live control process of a previous supervisor (the one holding
    /// control.lock), or starts one.
    func startControl(_ configuration: ControlChildConfiguration) {
        let state = ControlState(configuration: configuration, pidFile: self.configuration.data.controlPID)
        helpers.control = state
        if let holder = PidLock.holder(of: self.configuration.data.controlLock), holder > 1, kill(holder, 0) == 0 {
            // A serve restart must not restart a healthy control: it keeps its
            // connections, its driver and its lock. The health checks judge it as usual.
            state.process.adopted(holder)
            state.since = Self.now()
            _ = FileManager.default.createFile(
                atPath: self.configuration.data.controlPID, contents: Data("\(holder)\n".utf8), attributes: [.posixPermissions: 0o600])
            logger.info("adopted the control process", metadata: ["pid": "\(holder)"])
            return
        }
        spawnControl()
    }

    func spawnControl() {
        guard let state = helpers.control, !agent.shuttingDown else { return }
        do {
            let pid = try WorkerSpawner.spawnProcess(
                arguments: [configuration.workerExecutable, "control"] + state.configuration.arguments,
                descriptors: [], log: configuration.data.logs + "/control.log", environment: configuration.workerEnvironment)
            state.process.started(pid)
            if state.startedOnce { state.restarts += 1 }
            state.startedOnce = true
            state.since = Self.now()
            state.answered = false
            state.missed = 0
            state.up = false
            logger.info("control started", metadata: ["pid": "\(pid)"])
        } catch {
            logger.error("cannot start control", metadata: ["error": "\(error)"])
            if state.process.exited(reason: "\(error)", now: Self.now(), logger: logger) { spawnControl() }
        }
    }

    // MARK: - Watching

    /// Every tick: restart an exited control (with backoff), replace a killed one once
    /// it is gone, and check its health once a second.
    func watchControl(now: Double) {
        guard let state = helpers.control, !agent.shuttingDown else { return }
        if let killed = state.killed {
            // Gone means reaped (our child) or no such process (adopted).
            guard state.process.exitReason() != nil || (kill(killed, 0) != 0 && errno == ESRCH) else { return }
            state.killed = nil
            state.up = false
            logger.warning("the unresponsive control process is gone; starting a new one", metadata: ["pid": "\(killed)"])
            if state.process.exited(reason: "killed after missed health checks", now: now, logger: logger) { spawnControl() }
            return
        }
        if state.process.due(now: now, logger: logger) {
            state.up = false
            spawnControl()
            return
        }
        guard state.process.isRunning, !state.checking, now - state.lastCheck >= state.configuration.healthInterval else { return }
        state.checking = true
        state.lastCheck = now
        let pid = state.process.pid
        let socket = configuration.data.controlSocket
        let timeout = state.configuration.healthTimeout
        DispatchQueue.global().async { [self] in
            let health = Self.probeControl(socket: socket, timeout: timeout)
            queue.async { self.controlChecked(pid: pid, health: health) }
        }
    }

    private func controlChecked(pid: pid_t, health: Health?) {
        guard let state = helpers.control else { return }
        state.checking = false
        // A check of a process already replaced says nothing about the new one.
        guard state.process.pid == pid, state.killed == nil, !agent.shuttingDown else { return }
        if let health {
            if !state.up { logger.info("control answers", metadata: ["pid": "\(pid)", "api": "\(health.api ?? "-")"]) }
            state.up = true
            state.answered = true
            state.missed = 0
            state.api = health.api ?? state.api
            return
        }
        state.up = false
        // A new process gets time to open the store and bind before misses count.
        guard state.answered || Self.now() - state.since > state.configuration.startGrace else { return }
        state.missed += 1
        guard state.missed >= state.configuration.missesBeforeKill else { return }
        // SIGKILL works on a stopped process too; the next one starts once this one
        // is gone, so it never meets a lock still held.
        logger.error("control missed its health checks; killing it", metadata: ["pid": "\(pid)", "missed": "\(state.missed)"])
        kill(pid, SIGKILL)
        state.killed = pid
    }

    /// `GET /healthz` on control.sock within `timeout`: its answer, or nil.
    static func probeControl(socket: String, timeout: Double) -> Health? {
        guard let fd = try? Sockets.connectUnix(path: socket, timeout: timeout) else { return nil }
        defer { close(fd) }
        let request = Array("GET /healthz HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = now() + timeout
        while response.count < 65_536, now() < deadline {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            response.append(contentsOf: buffer[0..<count])
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200"), let split = text.range(of: "\r\n\r\n") else { return nil }
        return try? JSONDecoder().decode(Health.self, from: Data(text[split.upperBound...].utf8))
    }

    // MARK: - Stopping and status

    /// On shutdown: SIGTERM lets control finish its requests in flight.
    func stopControl() {
        helpers.control?.process.signal(SIGTERM)
    }

    /// On the last step of shutdown: the pid file goes with a process we stopped.
    func reapControl() {
        if let state = helpers.control, state.process.isChild { unlink(configuration.data.controlPID) }
    }

    /// The control process for `status`.
    func controlStatus() -> ControlProcessStatus? {
        guard let state = helpers.control else { return nil }
        return ControlProcessStatus(
            pid: state.process.isRunning ? state.process.pid : nil, api: state.api, up: state.up, restarts: state.restarts,
            missedChecks: state.missed, adopted: state.process.isRunning && !state.process.isChild)
    }
}
