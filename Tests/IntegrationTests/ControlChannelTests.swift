#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Supervisor
import Testing

/// Garbage on the control channel, both ways: the supervisor receiving it from a
/// worker it started, and a real worker receiving it from its "supervisor".
///
/// The "worker" is a binary rolled out to the free canary slot: a small Python
/// program that answers the binary probe like a real build, is spawned by the real
/// supervisor with the real descriptors (3: the pool's socket, 4: its control
/// listener), does the handshake, and then breaks the protocol one way. The
/// supervisor must stay up, drop and end the garbage sender, roll the binary back,
/// and no request of any pool may fail (the old canary serves until a replacement
/// is ready, which the garbage sender never is).
@Suite(.serialized) struct ControlChannelTests {
    /// The fake worker. `fake-variant` beside it says how to misbehave; every process
    /// appends `PID VARIANT` to `fake-pids` and writes the pid file a worker writes,
    /// so the harness ends it even if the supervisor does not.
    static let fakeWorker = #"""
        #!/usr/bin/python3
        import json, os, socket, struct, sys, time
        if len(sys.argv) > 1 and sys.argv[1] == "probe":
            print('{"protocol":1}')
            sys.exit(0)
        args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
        here = os.path.dirname(os.path.abspath(__file__))
        variant = open(os.path.join(here, "fake-variant")).read().strip()
        with open(os.path.join(here, "fake-pids"), "a") as log:
            log.write(f"{os.getpid()} {variant}\n")
        run = args["--data"] + "/run"
        with open(f'{run}/worker-{args["--pool"]}-{args["--slot"]}-{args["--instance"]}.pid', "w") as pidfile:
            pidfile.write(f"{os.getpid()}\n")
        listener = socket.socket(fileno=4)
        conn, _ = listener.accept()

        def read_exact(count):
            data = b""
            while len(data) < count:
                part = conn.recv(count - len(data))
                if not part:
                    sys.exit(0)
                data += part
            return data

        def frame(payload):
            return struct.pack(">I", len(payload)) + payload

        read_exact(struct.unpack(">I", read_exact(4))[0])  # the supervisor's hello
        identity = {"protocolVersion": 99 if variant == "wrong-version" else 1, "pid": os.getpid(),
                    "pool": args["--pool"], "slot": int(args["--slot"]), "instance": int(args["--instance"]),
                    "versions": {"runtime": 0, "rules": 0, "binary": 0}, "startedAt": time.time(), "draining": False}
        conn.sendall(frame(json.dumps({"hello": {"_0": identity}}).encode()))
        if variant == "not-json":
            conn.sendall(frame(b"\x00\xff{this is not json"))
        elif variant == "unknown-type":
            conn.sendall(frame(b'{"launchMissiles":{"_0":1}}'))
        elif variant == "wrong-shape":
            conn.sendall(frame(b'{"heartbeat":{"_0":{"requests":"many"}}}'))
        elif variant == "deeply-nested":
            conn.sendall(frame(b"[" * 200000))
        elif variant == "oversized":
            conn.sendall(struct.pack(">I", 0xFFFFFFF0) + b"x" * 100)
        elif variant == "truncated":
            conn.sendall(struct.pack(">I", 1000) + b'{"ready":{}}')
        time.sleep(60)
        """#

    /// What the supervisor's log must say for each variant.
    static let variants: [(name: String, logSays: String)] = [
        ("not-json", "malformed control frame from worker; replacing it"),
        ("unknown-type", "malformed control frame from worker; replacing it"),
        ("wrong-shape", "malformed control frame from worker; replacing it"),
        ("deeply-nested", "malformed control frame from worker; replacing it"),
        ("oversized", "a control frame announced 4294967280 bytes, over the 33554432-byte limit"),
        // Half a frame, then silence: no heartbeat either, so it is ended as a hung
        // worker would be, in its slot or, once rolled back, while it drains.
        ("truncated", "missed its heartbeats"),
        ("wrong-version", "speaks control protocol 99, not 1"),
    ]

    static func isAlive(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    @Test func garbageFromAWorkerEndsThatWorkerOnly() throws {
        let python = "/usr/bin/python3"
        try #require(FileManager.default.isExecutableFile(atPath: python), "the fake worker needs \(python)")
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let rollouts = RolloutIntegrationTests()
        let fake = try rollouts.writeFile(host, "fake-worker", Self.fakeWorker)
        chmod(fake, 0o755)
        let supervisorPID = try host.status().supervisorPID
        let run = try host.steadyLoad(rate: 30)
        defer { _ = run.stop() }

        for (variant, logSays) in Self.variants {
            try variant.write(toFile: host.root + "/fake-variant", atomically: true, encoding: .utf8)
            let started = Date()
            let id = try rollouts.startRollout(host, kind: "binary", file: fake)
            let state = try rollouts.waitForEnd(host, id, timeout: 40)
            let seconds = Date().timeIntervalSince(started)
            let pids = ((try? String(contentsOfFile: host.root + "/fake-pids", encoding: .utf8)) ?? "")
                .split(separator: "\n").filter { $0.hasSuffix(" \(variant)") }.compactMap { pid_t($0.split(separator: " ")[0]) }
            // Every garbage sender is ended by the supervisor, well before it would exit itself.
            let ended = waitFor(timeout: 10, interval: 0.05) { pids.allSatisfy { !Self.isAlive($0) } }
            let output = host.supervisorOutput()
            let line = output.split(separator: "\n").last { $0.contains(logSays) }.map(String.init) ?? "(nothing)"
            print("\(variant): rollout \(state) after \(String(format: "%.1f", seconds)) s, \(pids.count) fake worker(s) started, "
                  + "all ended: \(ended != nil); supervisor log: \(line)")
            #expect(state == "rolledBack", "\(variant)")
            #expect(!pids.isEmpty, "\(variant): the supervisor started the fake worker")
            #expect(ended != nil, "\(variant): the garbage sender is ended: \(pids.filter(Self.isAlive))")
            #expect(output.contains(logSays), "\(variant): the supervisor says why")
            #expect(host.supervisor?.isRunning == true, "\(variant): the supervisor is still up")
            #expect(try host.status().supervisorPID == supervisorPID)
            let back = waitFor(timeout: 15, interval: 0.1) {
                guard let free = try? host.pool("free") else { return false }
                return free.workers.count == 2 && free.workers.allSatisfy { $0.ready && $0.stats.versions.binary == 0 }
            }
            #expect(back != nil, "\(variant): the free pool is back to two workers of the old binary")
        }
        let report = run.stop()
        print(report.summary)
        for pool in ["free", "pro", "enterprise"] {
            #expect(report[pool]?.failed == 0, "\(pool): \(report[pool]?.failureDetails ?? [:])")
            #expect((report[pool]?.ok ?? 0) > 100)
        }
    }

    /// The other direction: a real `bulkhead worker`, spawned the way the supervisor
    /// spawns it (WorkerSpawner: descriptor 3 the pool's socket, 4 its control
    /// listener), with this test as its "supervisor". Garbage and a supervisor of
    /// another protocol are refused; the worker survives all of it, keeps serving
    /// HTTP when its control channel breaks (fail static), and takes a proper
    /// supervisor afterwards.
    @Test func aRealWorkerRefusesGarbageFromItsSupervisor() throws {
        let root = FileManager.default.temporaryDirectory.path + "/bulkhead-worker-\(getpid())-\(UUID().uuidString.prefix(8))"
        let data = DataDirectory(root)
        try data.create()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (socketFD, port) = try Sockets.listenTCP(host: "127.0.0.1", port: 0)
        let listenFD = WorkerSpawner.highDescriptor(socketFD)
        defer { close(listenFD) }
        let socketPath = data.workerSocket(pool: "free", slot: 0, instance: 1)
        let controlFD = WorkerSpawner.highDescriptor(try Sockets.listenUnix(path: socketPath))
        // The versioned command line of WorkerSpawner's contract.
        let pid = try WorkerSpawner.spawnProcess(
            arguments: [HostHarness.locateBinary(), "worker", "--protocol", String(controlProtocolVersion), "--pool", "free",
                        "--slot", "0", "--instance", "1", "--data", root],
            descriptors: [listenFD, controlFD], log: data.logs + "/free.log", environment: [])
        close(controlFD)
        defer {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }

        /// A connection to the worker's control socket.
        func connect() throws -> FrameConnection {
            let connection = FrameConnection(fd: try Sockets.connectUnix(path: socketPath))
            Sockets.setTimeouts(connection.fd, seconds: 5)
            return connection
        }
        func frame(_ payload: [UInt8]) -> [UInt8] {
            let count = payload.count
            return [UInt8(count >> 24 & 0xff), UInt8(count >> 16 & 0xff), UInt8(count >> 8 & 0xff), UInt8(count & 0xff)] + payload
        }
        func sendRaw(_ connection: FrameConnection, _ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { send(connection.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        /// Whether the worker closes the connection without sending a frame.
        func refused(_ connection: FrameConnection) -> Bool {
            do {
                _ = try connection.readFrameNow()
                return false
            } catch {
                return error.code == ECONNRESET
            }
        }
        let hello = ControlCodec.encode(SupervisorMessage.hello(protocolVersion: controlProtocolVersion, supervisorPID: getpid(), wantListener: false))

        // 1. Garbage instead of the hello, an oversized prefix, a hello of another protocol.
        let refusals: [(String, [UInt8])] = [
            ("not JSON", frame(Array("\u{0}garbage".utf8))),
            ("an order before the hello", frame(ControlCodec.encode(SupervisorMessage.drain))),
            ("an oversized length prefix", [0xff, 0xff, 0xff, 0xf0] + Array(repeating: 0x41, count: 16)),
            ("a hello of protocol 2", frame(ControlCodec.encode(
                SupervisorMessage.hello(protocolVersion: controlProtocolVersion + 1, supervisorPID: getpid(), wantListener: true)))),
        ]
        for (what, bytes) in refusals {
            let connection = try connect()
            sendRaw(connection, bytes)
            #expect(refused(connection), "\(what): the worker answers nothing and closes")
            #expect(Self.isAlive(pid), "\(what): the worker is still running")
            connection.close()
        }

        // 2. A proper supervisor: the handshake, then garbage orders among good ones.
        let connection = try connect()
        try connection.writeFrameNow(hello)
        guard case .hello(let identity) = ControlCodec.decode(WorkerMessage.self, from: try connection.readFrameNow()) else {
            Issue.record("no identity from the worker")
            return
        }
        #expect(identity.pid == pid && identity.protocolVersion == controlProtocolVersion)
        let cohort = try CohortConfiguration.parse("name = \"free\"\norder = 1\nport = 0\nworkers = 1\n", file: "free.toml")
        for garbage in ["{\"launchMissiles\":{}}", "not json", String(repeating: "[", count: 100_000), "{\"configure\":{\"cohort\":7}}"] {
            sendRaw(connection, frame(Array(garbage.utf8)))
        }
        for order in [SupervisorMessage.configure(cohort: cohort), .customers(assignments: ["acme": "free"]),
                      .putScript(ScriptSpec(customer: "acme", name: "hi", version: 1, source: "function handle() return 'still here' end")),
                      .start] {
            try connection.writeFrameNow(ControlCodec.encode(order))
        }
        var ready = false
        for _ in 0..<50 where !ready {
            guard let message = ControlCodec.decode(WorkerMessage.self, from: try connection.readFrameNow()) else { continue }
            if message == .ready { ready = true }
        }
        #expect(ready, "the worker went on after the garbage and became ready")
        #expect(httpGet(port: port, host: "hi.acme.localhost")?.body == "still here")

        // 3. The channel breaks (an oversized prefix): the worker drops it and serves on.
        sendRaw(connection, [0x7f, 0xff, 0xff, 0xff, 0x41])
        let dropped = waitFor(timeout: 5, interval: 0.02) {
            var byte: UInt8 = 0
            Sockets.setReceiveTimeout(connection.fd, seconds: 0.05)
            // Heartbeats may still be queued; the end is the close.
            while true {
                let count = recv(connection.fd, &byte, 1, 0)
                if count == 0 { return true }
                if count < 0 { return false }
            }
        }
        #expect(dropped != nil, "the worker closed the broken channel")
        #expect(httpGet(port: port, host: "hi.acme.localhost")?.body == "still here", "fail static: still serving")

        // 4. A new supervisor takes over, and can drain it.
        let next = try connect()
        try next.writeFrameNow(hello)
        guard case .hello(let again) = ControlCodec.decode(WorkerMessage.self, from: try next.readFrameNow()) else {
            Issue.record("the worker refused a proper supervisor after the garbage")
            return
        }
        #expect(again.pid == pid)
        try next.writeFrameNow(ControlCodec.encode(SupervisorMessage.drain))
        let exited = waitFor(timeout: 10, interval: 0.02) {
            var status: Int32 = 0
            return waitpid(pid, &status, WNOHANG) == pid
        }
        #expect(exited != nil, "the worker drained and exited")
        let log = (try? String(contentsOfFile: data.logs + "/free.log", encoding: .utf8)) ?? ""
        print(log)
        #expect(log.contains("malformed control frame dropped"))
        #expect(log.contains("which speaks control protocol \(controlProtocolVersion + 1), not \(controlProtocolVersion)"))
    }

    /// A worker that goes silent while it drains (here: stopped by SIGSTOP just before
    /// a scale-down drains it) is ended like a hung worker in a slot, not kept forever.
    @Test func aWorkerThatHangsWhileDrainingIsEnded() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let victim = try #require(try host.pool("pro").workers.first { $0.slot == 1 })
        kill(victim.pid, SIGSTOP)
        defer { kill(victim.pid, SIGKILL) }
        #expect(try host.cli(["cohort", "scale", "pro", "--workers", "1"]).status == 0)
        let ended = waitFor(timeout: 15, interval: 0.05) { !Self.isAlive(victim.pid) }
        print("stopped, draining worker ended after \(ended.map { String(format: "%.1f s", $0) } ?? "never")")
        #expect(ended != nil, "the hung draining worker is killed")
        #expect(host.supervisorOutput().contains("pid=\(victim.pid) pool=pro reason=no heartbeat"))
        #expect(try host.pool("pro").workers.count == 1)
        #expect(httpGet(port: try host.pool("pro").port, host: "echo.c-pro.localhost")?.status == 200)
    }
}
