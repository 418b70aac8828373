#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import LoadClient
import Testing

/// `bulkhead control` in its own process, supervised by the host agent: a crash or a
/// hang of control never costs a data-plane request, never silences `status` or
/// break glass, and never lets two rollout drivers run on one data directory.
@Suite(.serialized) struct ControlProcessTests {
    @Test func killNineOfControlUnderLoadFailsNoRequestAndControlComesBack() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(seconds: 60)
        defer { _ = run.stop() }
        usleep(1_000_000)
        let killed = try #require(host.controlPID())
        let killedAt = Date()
        #expect(kill(killed, SIGKILL) == 0)
        // Down from the kill until control.sock answers again (a new process).
        let downtime = waitFor(timeout: 30, interval: 0.02) {
            guard let pid = host.controlPID(), pid != killed else { return false }
            return SocketClient.request(socket: host.data.controlSocket, "GET", "/healthz", timeout: 1)?.status == 200
        }
        print("control API down after kill -9: \(downtime.map { String(format: "%.2f s", $0) } ?? "not back within 30 s")")
        #expect(downtime != nil, "a new control answers on control.sock")
        try host.waitForControlPlane()
        let control = try #require(try host.status().control)
        print("control after kill -9: pid \(control.pid ?? -1), restarts \(control.restarts), api \(control.api ?? "-"), "
            + "\(String(format: "%.2f", Date().timeIntervalSince(killedAt))) s after the kill")
        #expect(control.up)
        #expect(control.restarts >= 1)
        #expect(control.pid != killed)
        // The API works again: a customer is added through the new process.
        #expect(try host.addCustomer("after-kill", cohort: "pro").hasPrefix("bht_"))
        usleep(1_000_000)
        let report = run.stop()
        print(report.summary)
        for target in report.targets {
            #expect(target.failed == 0, "pool \(target.label) failed \(target.failed): \(target.failureDetails)")
            #expect(target.ok > 0, "pool \(target.label) served")
        }
    }

    @Test func sigstopOfControlMidRolloutIsDetectedAndReplacedWithOneDriverAtATime() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let run = try host.steadyLoad(seconds: 90)
        defer { _ = run.stop() }
        let rollouts = RolloutIntegrationTests()
        let id = try rollouts.startRollout(host, kind: "rules", file: try rollouts.writeFile(host, "r.json", RolloutIntegrationTests.rules(killswitch: false)))
        usleep(1_500_000)

        // Every 20 ms: the control processes of this data directory that are not
        // zombies, and who holds control.lock.
        let watcher = ControlWatcher(data: host.data)
        watcher.start()
        let stopped = try #require(host.controlPID())
        let stoppedAt = Date()
        #expect(kill(stopped, SIGSTOP) == 0)

        // While it is stopped, the operator's tools answer from the agent.
        usleep(300_000)
        for command in [["status"], ["break-glass", "status"]] {
            let started = Date()
            let result = try host.cli(command)
            let seconds = Date().timeIntervalSince(started)
            print("bulkhead \(command.joined(separator: " ")) with control stopped: exit \(result.status) in \(String(format: "%.3f", seconds)) s")
            #expect(result.status == 0, "\(result.output)")
            #expect(seconds < 2, "bulkhead \(command.joined(separator: " ")) answers within 2 s")
        }

        let replaced = waitFor(timeout: 30, interval: 0.02) {
            guard let pid = host.controlPID(), pid != stopped else { return false }
            return (try? host.status().control?.up) == true
        }
        print("stopped control detected and replaced after \(replaced.map { String(format: "%.2f s", $0 + 0.3) } ?? "never (30 s)")"
            + " (\(String(format: "%.2f", Date().timeIntervalSince(stoppedAt))) s since SIGSTOP)")
        #expect(replaced != nil)
        #expect(kill(stopped, 0) != 0 && errno == ESRCH, "the stopped control was killed, not left holding the lock")
        usleep(500_000)
        let samples = watcher.stop()
        print("control processes sampled \(samples.count) times: at most \(samples.map(\.processes.count).max() ?? 0) at once; lock holders \(Set(samples.compactMap(\.holder)).sorted())")
        #expect(samples.allSatisfy { $0.processes.count <= 1 }, "never two control processes at once")
        #expect(Set(samples.compactMap(\.holder)).count == 2, "the lock went from the stopped control to its replacement")

        let final = try rollouts.waitForEnd(host, id, timeout: 90)
        print("rollout across the SIGSTOP: \(final)")
        #expect(final == "completed")
        // One driver's decisions: each stage passed once, the rollout completed once.
        let state = try rollouts.rolloutState(host, id)
        let decisions = (state["decisions"] as? [[String: Any]]) ?? []
        let passed = decisions.filter { $0["event"] as? String == "passed" }.compactMap { $0["stage"] as? Int }
        #expect(passed.count == Set(passed).count, "no stage passed twice: \(passed)")
        #expect(decisions.filter { $0["event"] as? String == "completed" }.count == 1)
        let report = run.stop()
        print(report.summary)
        for target in report.targets {
            #expect(target.failed == 0, "pool \(target.label) failed \(target.failed): \(target.failureDetails)")
        }
    }

    @Test func aSecondControlOnTheSameDataDirectoryExitsNamingTheHolder() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let holder = try #require(host.controlPID())
        let second = try runWithTimeout(host.binary, [
            "control", "--data", host.data.root, "--cohorts", host.cohorts, "--api", "127.0.0.1:0",
        ], timeout: 20)
        print("second control: exit \(second.status): \(second.output)")
        #expect(second.status == 1)
        #expect(second.output.contains("pid \(holder)"))
        #expect(host.controlPID() == holder, "the running control keeps the lock")
        #expect(try host.status().control?.up == true)
    }

    @Test func anAgentRestartedWhileControlIsDownServesFromItsReplica() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        // The agent goes, then its control: nothing of the control plane runs.
        host.signalSupervisor(SIGKILL)
        let control = try #require(host.controlPID())
        kill(control, SIGKILL)
        #expect(waitFor(timeout: 10) { kill(control, 0) != 0 && errno == ESRCH } != nil)
        // Control keeps failing from now on: its API address cannot be bound.
        host.apiAddress = "192.0.2.1:0"
        try host.start(waitForControl: false)
        usleep(2_000_000)
        let status = try host.status()
        print("agent restarted with control failing: control \(String(describing: status.control)), replica at \(status.feed?.appliedRevision ?? -1)")
        #expect(status.control?.up == false)
        #expect((status.control?.restarts ?? 0) >= 1, "the agent keeps restarting control")
        #expect(status.feed?.appliedRevision != nil)
        for pool in ["free", "pro", "enterprise"] {
            let answer = httpGet(port: try host.pool(pool).port, host: "echo.c-\(pool).localhost", path: "/replica")
            #expect(answer?.status == 200, "pool \(pool) serves from the replica: \(String(describing: answer))")
            #expect(answer?.body.contains("echo /replica") == true)
        }
        let text = try host.cli(["status"])
        print(text.output)
        #expect(text.status == 0)
        #expect(text.output.contains("control "))
    }

    /// Runs a command to its end or kills it past `timeout`.
    func runWithTimeout(_ binary: String, _ arguments: [String], timeout: Double) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw HarnessError("\(arguments.first ?? "") did not exit within \(timeout) s")
        }
        return (process.terminationStatus, String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }
}

/// Samples the control processes of one data directory from /proc, and the pid
/// holding its control.lock, until stopped.
final class ControlWatcher: @unchecked Sendable {
    struct Sample {
        var processes: [pid_t]
        var holder: pid_t?
    }

    let data: DataDirectory
    private let lock = NSLock()
    private var samples: [Sample] = []
    private var running = true
    private var thread: Thread?

    init(data: DataDirectory) {
        self.data = data
    }

    func start() {
        let thread = Thread { [self] in
            while lock.withLock({ running }) {
                let sample = Sample(processes: Self.controlProcesses(data: data), holder: PidLock.holder(of: data.controlLock))
                lock.withLock { samples.append(sample) }
                usleep(20_000)
            }
        }
        self.thread = thread
        thread.start()
    }

    func stop() -> [Sample] {
        lock.withLock { running = false }
        usleep(50_000)
        return lock.withLock { samples }
    }

    /// Live (not zombie) `bulkhead control` processes whose command line names `data`.
    static func controlProcesses(data: DataDirectory) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let arguments = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard arguments.count > 1, arguments[1] == "control", arguments.contains(data.root) else { return false }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            // The state follows the command name in parentheses: Z is a zombie (dead, not yet reaped).
            guard let close = stat.lastIndex(of: ")") else { return false }
            return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
        }
    }
}
