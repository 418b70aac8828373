#if canImport(Glibc)
import Glibc
#endif
import Etcd
import Foundation

/// Real etcd for the tests: Debian's `etcd-server` (installed when missing), members
/// on free ports of 127.0.0.1 with their data on tmpfs, timeouts generous for a
/// loaded 2-core machine. Every process it starts it stops by pid.
enum EtcdInstall {
    static let binary = "/usr/bin/etcd"

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Installs etcd once per test process (the first caller waits, the others get
    /// the same outcome).
    static func ensure() throws {
        try installed.get()
    }

    private static let installed: Result<Void, any Error> = {
        do {
            try install()
            return .success(())
        } catch {
            return .failure(error)
        }
    }()

    private static func install() throws {
        if FileManager.default.isExecutableFile(atPath: binary) { return }
        guard geteuid() == 0 else {
            throw Failure(description: "\(binary) is missing and only root can install it: apt-get install etcd-server")
        }
        // Debian's package starts a system etcd on 2379 unless told not to; a
        // policy-rc.d that refuses every start keeps it down for the install.
        let policy = "/usr/sbin/policy-rc.d"
        let madePolicy = !FileManager.default.fileExists(atPath: policy)
        if madePolicy {
            _ = FileManager.default.createFile(atPath: policy, contents: Data("#!/bin/sh\nexit 101\n".utf8), attributes: [.posixPermissions: 0o755])
        }
        defer { if madePolicy { try? FileManager.default.removeItem(atPath: policy) } }
        let status = run("/bin/sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server"])
        guard status == 0, FileManager.default.isExecutableFile(atPath: binary) else {
            throw Failure(description: "apt-get install etcd-server failed (exit \(status))")
        }
        // Should a system etcd have started anyway, stop it through its init script
        // (it would hold 2379 and its data in /var/lib/etcd).
        for pidFile in ["/run/etcd.pid", "/var/run/etcd.pid"] where FileManager.default.fileExists(atPath: pidFile) {
            _ = run("/etc/init.d/etcd", ["stop"])
        }
    }

    static func run(_ path: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return -1
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// A CA, a server certificate for 127.0.0.1 and client certificates, made with
/// openssl for one test (etcd's `--client-cert-auth` takes a client certificate's CN
/// as its user).
struct TestCertificates: Sendable {
    let directory: String
    var caFile: String { directory + "/ca.crt" }
    var serverCertificate: String { directory + "/server.crt" }
    var serverKey: String { directory + "/server.key" }

    /// Makes the CA and the server's certificate in `directory`.
    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=bulkhead-test-ca",
                     "-keyout", directory + "/ca.key", "-out", caFile])
        try sign(name: "server", commonName: "etcd", extensions: "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    }

    /// A client certificate with this CN; its files.
    func client(_ commonName: String) throws -> EtcdTLS {
        try sign(name: "client-" + commonName, subject: "/CN=\(commonName)", extensions: "extendedKeyUsage=clientAuth\n")
        return EtcdTLS(caFile: caFile, certificateFile: directory + "/client-\(commonName).crt", keyFile: directory + "/client-\(commonName).key")
    }

    /// A client certificate without a CN (what etcd's gateway takes once auth is on).
    func clientWithoutCommonName(_ name: String) throws -> EtcdTLS {
        try sign(name: "plain-" + name, subject: "/O=bulkhead-test/OU=\(name)", extensions: "extendedKeyUsage=clientAuth\n")
        return EtcdTLS(caFile: caFile, certificateFile: directory + "/plain-\(name).crt", keyFile: directory + "/plain-\(name).key")
    }

    private func sign(name: String, commonName: String, extensions: String) throws {
        try sign(name: name, subject: "/CN=\(commonName)", extensions: extensions)
    }

    private func sign(name: String, subject: String, extensions: String) throws {
        let base = directory + "/" + name
        try extensions.write(toFile: base + ".ext", atomically: true, encoding: .utf8)
        try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", base + ".key", "-out", base + ".csr"])
        try openssl(["x509", "-req", "-in", base + ".csr", "-CA", caFile, "-CAkey", directory + "/ca.key", "-CAcreateserial",
                     "-days", "1", "-extfile", base + ".ext", "-out", base + ".crt"])
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw EtcdInstall.Failure(description: "openssl \(arguments.joined(separator: " ")) failed")
        }
    }
}

/// One etcd process.
final class EtcdMember: @unchecked Sendable {
    let name: String
    let clientPort: Int
    let peerPort: Int
    let dataDirectory: String
    let logPath: String
    let certificates: TestCertificates?
    private var process: Process?

    var clientURL: String { "\(certificates == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }
    var peerURL: String { "http://127.0.0.1:\(peerPort)" }
    var pid: pid_t { process?.processIdentifier ?? 0 }
    var isRunning: Bool { process?.isRunning ?? false }

    init(name: String, root: String, certificates: TestCertificates?) throws {
        self.name = name
        self.certificates = certificates
        clientPort = try freePort()
        peerPort = try freePort()
        dataDirectory = root + "/" + name
        logPath = root + "/" + name + ".log"
    }

    func start(initialCluster: String, token: String, extraArguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: EtcdInstall.binary)
        process.arguments = [
            "--name", name, "--data-dir", dataDirectory,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", token,
            // A loaded 2-core machine: heartbeats may come late, so elections are slow
            // to start (etcd's defaults are 100 and 1000 too, said here on purpose).
            "--heartbeat-interval", "100", "--election-timeout", "1000",
        ] + extraArguments
        if let certificates {
            process.arguments! += [
                "--cert-file", certificates.serverCertificate, "--key-file", certificates.serverKey,
                "--trusted-ca-file", certificates.caFile, "--client-cert-auth",
            ]
        }
        // etcd also reads ETCD_* variables, which would fight the flags.
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ETCD_") }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        self.process = process
    }

    /// SIGKILL, as a crash would; waits until it is gone.
    func kill9() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGSTOP: alive but silent, as a hung or cut-off member.
    func pause() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGSTOP)
    }

    /// SIGCONT.
    func resume() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGCONT)
    }

    /// SIGTERM, then SIGKILL after 5 s; waits until it is gone.
    func stop() {
        guard let process else { return }
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// A cluster of `size` members on loopback, started together.
final class EtcdCluster: @unchecked Sendable {
    let members: [EtcdMember]
    let root: String
    /// The client TLS files of the CN `root`, when the members serve TLS.
    private(set) var rootTLS: EtcdTLS?
    /// The CA and certificates, when the members serve TLS.
    private(set) var certificates: TestCertificates?
    /// Seconds from the first start to every member answering with a leader.
    private(set) var startSeconds: Double = 0

    var endpoints: [String] { members.map(\.clientURL) }

    private init(members: [EtcdMember], root: String) {
        self.members = members
        self.root = root
    }

    /// Starts a cluster and waits until every member knows the leader; tries again
    /// on new ports when a port was taken meanwhile.
    static func start(size: Int = 1, extraArguments: [String] = [], tls: Bool = false) async throws -> EtcdCluster {
        try EtcdInstall.ensure()
        var lastFailure = ""
        for _ in 0..<4 {
            let root = "/dev/shm/bulkhead-etcd-\(getpid())-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            let certificates = tls ? try TestCertificates(directory: root + "/tls") : nil
            let members = try (1...size).map { try EtcdMember(name: "m\($0)", root: root, certificates: certificates) }
            let cluster = EtcdCluster(members: members, root: root)
            cluster.certificates = certificates
            cluster.rootTLS = try certificates?.client("root")
            let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
            let started = ContinuousClock.now
            do {
                for member in members {
                    try member.start(initialCluster: initial, token: String(root.suffix(8)), extraArguments: extraArguments)
                }
                try await cluster.waitUntilReady(timeout: .seconds(60))
                cluster.startSeconds = (ContinuousClock.now - started).seconds
                return cluster
            } catch {
                let logs = members.map { "\($0.name): \($0.log.suffix(1500))" }.joined(separator: "\n")
                cluster.stop()
                lastFailure = "\(error)\n\(logs)"
                if !logs.contains("address already in use") { break }
            }
        }
        throw EtcdInstall.Failure(description: "etcd did not start: \(lastFailure)")
    }

    private func waitUntilReady(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        let client = try EtcdClient(
            endpoints: endpoints, tls: rootTLS, timeouts: .init(connect: .seconds(1), request: .seconds(2), failover: .seconds(1)))
        defer { Task { await client.shutdown() } }
        var ready = Set<String>()
        while ready.count < members.count {
            for member in members where !ready.contains(member.name) {
                guard member.isRunning else {
                    throw EtcdInstall.Failure(description: "\(member.name) exited")
                }
                if let status = try? await client.status(of: URL(string: member.clientURL)!), status.leader != 0 {
                    ready.insert(member.name)
                }
            }
            if ContinuousClock.now > deadline { throw EtcdInstall.Failure(description: "no leader after \(timeout)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The member that leads now (asked of each running member).
    func leader() async throws -> EtcdMember? {
        let client = try EtcdClient(endpoints: endpoints, tls: rootTLS)
        defer { Task { await client.shutdown() } }
        for member in members where member.isRunning {
            if let status = try? await client.status(of: URL(string: member.clientURL)!), status.isLeader { return member }
        }
        return nil
    }

    /// The member serving `url`.
    func member(at url: URL) -> EtcdMember? {
        members.first { $0.clientPort == url.port }
    }

    /// Stops every member and removes their data.
    func stop() {
        for member in members { member.stop() }
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// Runs `body` with a fresh cluster and a client of all its members; stops both
/// after, whatever `body` did.
func withEtcd<T>(
    size: Int = 1, extraArguments: [String] = [], tls: Bool = false, timeouts: EtcdConfiguration.Timeouts = .init(),
    _ body: (EtcdCluster, EtcdClient) async throws -> T
) async throws -> T {
    let cluster = try await EtcdCluster.start(size: size, extraArguments: extraArguments, tls: tls)
    let client: EtcdClient
    do {
        client = try EtcdClient(endpoints: cluster.endpoints, tls: cluster.rootTLS, timeouts: timeouts)
    } catch {
        cluster.stop()
        throw error
    }
    do {
        let result = try await body(cluster, client)
        await client.shutdown()
        cluster.stop()
        return result
    } catch {
        await client.shutdown()
        cluster.stop()
        throw error
    }
}

/// A port of 127.0.0.1 free right now (bound to 0, read back, released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw EtcdInstall.Failure(description: "socket: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw EtcdInstall.Failure(description: "bind: \(errno)") }
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw EtcdInstall.Failure(description: "getsockname: \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

extension Duration {
    /// The span in seconds.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// The median of some numbers (0 for none).
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted[sorted.count / 2]
}
