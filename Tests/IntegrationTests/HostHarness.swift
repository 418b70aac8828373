#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import LoadClient
import Supervisor

/// A real bulkhead host for a test: its own temporary cohorts, scripts and data
/// directories, the real `bulkhead` binary, pools on free ports of 127.0.0.1.
/// `stop()` ends every process it started, by pid.
final class HostHarness: @unchecked Sendable {
    struct Pool {
        var name: String
        var order: Int
        var workers: Int = 2
        var canaryWorkers: Int = 1
        var wallMilliseconds: Int = 400
        var instructions: Int = 5_000_000
        var memoryMB: Int = 16
        var maxBodyKB: Int = 64
        var extra: String = ""
    }

    let root: String
    let cohorts: String
    let scripts: String
    let data: DataDirectory
    let binary: String
    private(set) var supervisor: Process?
    private var supervisorLog: FileHandle?
    var environment: [String: String] = [:]
    /// The `--api` serve passes to its control process.
    var apiAddress = "127.0.0.1:0"
    /// Extra arguments for `bulkhead serve` (e.g. `--demo`).
    var serveArguments: [String] = []
    /// A command that execs `bulkhead serve` in place (same pid), e.g.
    /// `["/usr/bin/prlimit", "--nofile=256:256", "--"]`.
    var launcher: [String] = []

    /// Three pools, two workers each, one customer per pool with an `echo` script.
    static func standard() throws -> HostHarness {
        let host = try HostHarness(pools: [
            Pool(name: "free", order: 1), Pool(name: "pro", order: 2), Pool(name: "enterprise", order: 3),
        ])
        for pool in ["free", "pro", "enterprise"] {
            try host.assign(customer: "c-\(pool)", to: pool)
            try host.writeScript(customer: "c-\(pool)", name: "echo", source: HostHarness.echoScript)
        }
        return host
    }

    /// Answers with the pool's customer, path and a per-state counter.
    static let echoScript = """
        local n = 0
        function handle(req)
          n = n + 1
          return { status = 200, headers = { ["content-type"] = "text/plain" }, body = "echo " .. req.path .. " #" .. n }
        end
        """

    init(pools: [Pool]) throws {
        root = FileManager.default.temporaryDirectory.path + "/bulkhead-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        cohorts = root + "/cohorts"
        scripts = root + "/scripts"
        data = DataDirectory(root + "/data")
        binary = Self.locateBinary()
        for directory in [cohorts, scripts] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try "".write(toFile: scripts + "/customers.toml", atomically: true, encoding: .utf8)
        for pool in pools { try writeCohort(pool) }
    }

    static func locateBinary() -> String {
        if let path = ProcessInfo.processInfo.environment["BULKHEAD_BIN"] { return path }
        // Beside the test bundle: .build/<triple>/debug/bulkhead.
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("bulkhead").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/bulkhead"
    }

    // MARK: Files

    func writeCohort(_ pool: Pool) throws {
        let text = """
            name = "\(pool.name)"
            order = \(pool.order)
            port = 0
            workers = \(pool.workers)
            canary_workers = \(pool.canaryWorkers)

            [limits]
            instructions = \(pool.instructions)
            memory_mb = \(pool.memoryMB)
            wall_ms = \(pool.wallMilliseconds)
            max_body_kb = \(pool.maxBodyKB)

            [gate]
            bake_seconds = 1
            max_bake_seconds = 10
            min_requests = 20

            [restart]
            max_restarts = 5
            window_seconds = 10
            \(pool.extra)
            """
        try text.write(toFile: cohorts + "/\(pool.name).toml", atomically: true, encoding: .utf8)
    }

    func writeRawCohort(_ name: String, _ text: String) throws {
        try text.write(toFile: cohorts + "/\(name).toml", atomically: true, encoding: .utf8)
    }

    func assign(customer: String, to pool: String) throws {
        let path = scripts + "/customers.toml"
        let existing = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        try (existing + "\(customer) = \"\(pool)\"\n").write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: scripts + "/\(customer)", withIntermediateDirectories: true)
    }

    func writeScript(customer: String, name: String, source: String) throws {
        try FileManager.default.createDirectory(atPath: scripts + "/\(customer)", withIntermediateDirectories: true)
        try source.write(toFile: scripts + "/\(customer)/\(name).lua", atomically: true, encoding: .utf8)
    }

    // MARK: Processes

    /// Starts `bulkhead serve`; returns once every pool has all its workers ready,
    /// control's API answers and the replica has caught up with the control store.
    func start(waitForReady: Bool = true, waitForControl: Bool = true) throws {
        let process = Process()
        let serve = ["serve", "--cohorts", cohorts, "--data", data.root, "--scripts", scripts, "--log-level", "info",
                     "--api", apiAddress, "--metrics", "127.0.0.1:0", "--ingress", "127.0.0.1:0"] + serveArguments
        if let first = launcher.first {
            process.executableURL = URL(fileURLWithPath: first)
            process.arguments = Array(launcher.dropFirst()) + [binary] + serve
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = serve
        }
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in self.environment { environment[key] = value }
        process.environment = environment
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let logPath = root + "/supervisor.log"
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        try process.run()
        supervisor = process
        supervisorLog = log
        if waitForReady { try waitUntilReady() }
        if waitForReady && waitForControl { try waitForControlPlane() }
    }

    /// Waits until the control process answers its health checks (its API listens)
    /// and the host's replica has applied what control wrote at its start (the
    /// scripts directory, `--demo`).
    func waitForControlPlane(timeout: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no status"
        while Date() < deadline {
            if let status = try? status() {
                if let control = status.control, control.up, control.api != nil {
                    // A few ticks for the agent to look at the feed after control's writes.
                    usleep(150_000)
                    // A control store the agent cannot follow (a test damaged it) has nothing to catch up with.
                    if let feed = try? self.status().feed, feed.appliedRevision == feed.latestRevision || feed.problem != nil { return }
                    last = "replica behind the feed"
                } else {
                    last = "control not up: \(String(describing: status.control))"
                }
            }
            usleep(50_000)
        }
        throw HarnessError("control not ready within \(timeout) s (\(last))\n\(supervisorOutput())\n\(controlOutput())")
    }

    /// What the control process logged (`DATA/logs/control.log`).
    func controlOutput() -> String {
        (try? String(contentsOfFile: data.logs + "/control.log", encoding: .utf8)) ?? ""
    }

    /// The pid of the control process holding control.lock, if one does.
    func controlPID() -> pid_t? {
        PidLock.holder(of: data.controlLock)
    }

    /// Runs `bulkhead serve` to completion (for starts that must fail); returns its
    /// exit status and output.
    func runServeExpectingExit(timeout: Double = 20) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--cohorts", cohorts, "--data", data.root, "--scripts", scripts, "--api", "127.0.0.1:0",
                             "--metrics", "127.0.0.1:0", "--ingress", "127.0.0.1:0"]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw HarnessError("serve did not exit within \(timeout) s")
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationStatus, output)
    }

    /// Waits until every pool reports all its workers ready.
    func waitUntilReady(timeout: Double = 30, excluding: Set<String> = []) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no status"
        while Date() < deadline {
            if let status = try? status() {
                let pending = status.pools.filter { pool in
                    !excluding.contains(pool.name) && pool.workers.filter(\.ready).count < pool.desiredWorkers
                }
                if pending.isEmpty { return }
                last = pending.map { "\($0.name): \($0.workers.filter(\.ready).count)/\($0.desiredWorkers)" }.joined(separator: ", ")
            }
            if let supervisor, !supervisor.isRunning {
                throw HarnessError("supervisor exited with \(supervisor.terminationStatus):\n\(supervisorOutput())")
            }
            usleep(20_000)
        }
        throw HarnessError("pools not ready within \(timeout) s (\(last))\n\(supervisorOutput())")
    }

    func status() throws -> HostStatus {
        guard let answer = SocketClient.request(socket: data.adminSocket, "GET", "/v1/host/status", timeout: 5) else {
            throw HarnessError("no status answer on \(data.adminSocket)")
        }
        guard answer.status == 200, let status = try? JSONDecoder().decode(HostStatus.self, from: Data(answer.body.utf8)) else {
            throw HarnessError("bad status answer: \(answer.status) \(answer.body)")
        }
        return status
    }

    func pool(_ name: String) throws -> PoolStatus {
        guard let pool = try status().pools.first(where: { $0.name == name }) else { throw HarnessError("no pool \(name)") }
        return pool
    }

    func supervisorOutput() -> String {
        (try? String(contentsOfFile: root + "/supervisor.log", encoding: .utf8)) ?? ""
    }

    /// Pids of every worker with a pid file, alive or not.
    func workerPIDsFromFiles() -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: data.run)) ?? []
        return entries.filter { $0.hasSuffix(".pid") }.compactMap { entry in
            (try? String(contentsOfFile: data.run + "/" + entry, encoding: .utf8))
                .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// Kills the supervisor with `signal` and waits for it to exit.
    func signalSupervisor(_ signal: Int32, wait: Bool = true) {
        guard let supervisor else { return }
        kill(supervisor.processIdentifier, signal)
        if wait { supervisor.waitUntilExit() }
    }

    /// Stops everything: SIGTERM to the supervisor (it drains its workers), then
    /// SIGKILL to any worker still alive, by pid; removes the temporary files.
    func stop() {
        if let supervisor, supervisor.isRunning {
            kill(supervisor.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while supervisor.isRunning && Date() < deadline { usleep(20_000) }
            if supervisor.isRunning {
                kill(supervisor.processIdentifier, SIGKILL)
                supervisor.waitUntilExit()
            }
        }
        for pid in workerPIDsFromFiles() where pid > 1 {
            kill(pid, SIGKILL)
        }
        // The control process (serve stops its own child; one adopted or orphaned
        // by a killed serve is still holding control.lock).
        if let pid = controlPID(), pid > 1 { kill(pid, SIGKILL) }
        try? supervisorLog?.close()
        if ProcessInfo.processInfo.environment["BULKHEAD_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    // MARK: API

    /// The control API's port.
    func apiPort() throws -> Int {
        guard let api = try status().api, let port = Int(api.split(separator: ":").last ?? "") else {
            throw HarnessError("the API is not listening")
        }
        return port
    }

    /// The admin token the supervisor wrote.
    func adminToken() throws -> String {
        try String(contentsOfFile: data.root + "/admin.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs the bulkhead CLI against this host's data directory.
    func cli(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try Self.cli(binary: binary, arguments + ["--data", data.root])
    }

    /// Runs the bulkhead CLI with no terminal on its standard input (so a command
    /// that asks for confirmation on a TTY never waits for one); returns its exit
    /// status and its standard output and error together.
    static func cli(binary: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// Adds a customer with the CLI; returns its token (the last line).
    func addCustomer(_ name: String, cohort: String) throws -> String {
        let result = try cli(["customer", "add", name, "--cohort", cohort])
        guard result.status == 0, let token = result.output.split(separator: "\n").last.map(String.init) else {
            throw HarnessError("customer add failed: \(result.output)")
        }
        return token
    }

    /// A call to the control API.
    func api(_ method: String, _ path: String, token: String?, body: [UInt8] = []) throws -> (status: Int, headers: [String: String], body: String) {
        var headers: [String: String] = [:]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        guard let answer = httpRequest(port: try apiPort(), method: method, path: path, headers: headers, body: body) else {
            throw HarnessError("no answer from the API for \(method) \(path)")
        }
        return answer
    }

    // MARK: Traffic

    /// Steady traffic at every named pool's `echo` script (customer `c-POOL`): enough
    /// connections that a canary slot gets its share, a bounded rate per connection.
    func steadyLoad(pools: [String] = ["free", "pro", "enterprise"], connections: Int = 6, rate: Double = 40,
                    seconds: Int = 60) throws -> LoadRun {
        try LoadRun.start(LoadConfiguration(
            targets: try pools.map { try target($0, pool: $0, customer: "c-\($0)") },
            connectionsPerTarget: connections, stop: .duration(.seconds(seconds)), ratePerConnection: rate))
    }

    /// A load target for a customer's script on a pool, addressed by Host.
    func target(_ label: String, pool: String, customer: String, script: String = "echo", path: String = "/x",
                expectBody: String? = "echo") throws -> LoadTarget {
        var target = LoadTarget(label: label, host: "127.0.0.1", port: try self.pool(pool).port)
        target.hostHeader = "\(script).\(customer).localhost"
        target.path = path
        target.expectedBodySubstring = expectBody
        target.expectedPool = pool
        return target
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Waits for `condition`, polling; returns the seconds it took, or nil on timeout.
func waitFor(timeout: Double, interval: Double = 0.005, _ condition: () -> Bool) -> Double? {
    let start = Date()
    while Date().timeIntervalSince(start) < timeout {
        if condition() { return Date().timeIntervalSince(start) }
        usleep(useconds_t(interval * 1_000_000))
    }
    return nil
}

/// One HTTP request over a fresh connection, the way curl sends it.
/// A TCP connection to 127.0.0.1:`port` with send and receive timeouts, or nil when
/// it is refused. The caller closes it.
func connectLoopback(port: Int, timeout: Double) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    Sockets.setTimeouts(fd, seconds: timeout)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        return nil
    }
    return fd
}

func httpRequest(
    port: Int, method: String = "GET", host: String = "127.0.0.1", path: String = "/", headers: [String: String] = [:],
    body: [UInt8] = [], timeout: Double = 10
) -> (status: Int, headers: [String: String], body: String)? {
    guard let fd = connectLoopback(port: port, timeout: timeout) else { return nil }
    defer { close(fd) }
    var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if !body.isEmpty || method == "PUT" || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
    let request = Array((head + "\r\n").utf8) + body
    var offset = 0
    while offset < request.count {
        let sent = request[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent <= 0 { return nil }
        offset += sent
    }
    var data = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = recv(fd, &chunk, chunk.count, 0)
        if count <= 0 { break }
        data.append(contentsOf: chunk[0..<count])
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return nil }
    let lines = text[..<split.lowerBound].split(separator: "\r\n")
    guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else { return nil }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    var bodyText = String(text[split.upperBound...])
    if headers["transfer-encoding"] == "chunked" { bodyText = dechunk(bodyText) }
    return (status, headers, bodyText)
}

/// Decodes a chunked body (tests only: well-formed input).
private func dechunk(_ text: String) -> String {
    var rest = Substring(text)
    var output = ""
    while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 {
        let start = lineEnd.upperBound
        let bytes = Array(rest[start...].utf8)
        output += String(decoding: bytes.prefix(size), as: UTF8.self)
        rest = Substring(String(decoding: bytes.dropFirst(size + 2), as: UTF8.self))
    }
    return output
}

/// A GET to a pool, addressed by Host.
func httpGet(port: Int, host: String, path: String = "/", timeout: Double = 5) -> (status: Int, headers: [String: String], body: String)? {
    httpRequest(port: port, host: host, path: path, timeout: timeout)
}
