#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Ingress
import Synchronization

/// An ingress on an ephemeral port with a routes file in a temporary directory, as
/// the supervisor would start it; `stop()` ends it and removes the directory.
final class IngressHarness: Sendable {
    let directory: String
    let routesFile: String
    let listenFD: Int32
    let port: Int
    let server: IngressServer
    private let logBox: LogBox

    /// Starts an ingress. `routes` is written first unless nil (no routes file).
    init(routes: Routes?, configure: (inout IngressOptions) -> Void = { _ in }) throws {
        directory = NSTemporaryDirectory() + "bulkhead-ingress-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        let data = DataDirectory(directory)
        routesFile = data.run + "/routes.json"
        (listenFD, port) = try Sockets.listenTCP(host: "127.0.0.1", port: 0)
        var options = IngressOptions(data: data, listenFD: listenFD)
        options.routesPollInterval = .milliseconds(20)
        configure(&options)
        let box = LogBox()
        options.log = { line in box.append(line) }
        self.logBox = box
        server = try IngressServer(options: options)
        if let routes { try write(routes) }
        server.start()
    }

    /// What the ingress logged.
    var logs: [String] {
        logBox.lines
    }

    /// Replaces the routes file atomically (temp file + rename), as the supervisor does.
    func write(_ routes: Routes) throws {
        try writeRaw(Data(routes.json.utf8))
    }

    /// Replaces the routes file with these exact bytes, atomically.
    func writeRaw(_ data: Data) throws {
        let temporary = routesFile + ".tmp-\(UUID().uuidString.prefix(6))"
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, routesFile) == 0 else {
            throw TestClientError(description: "rename: errno \(errno)")
        }
    }

    func stop() {
        server.stop()
        close(listenFD)
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The ingress's log lines, collected.
final class LogBox: Sendable {
    private let storage = Mutex<[String]>([])

    func append(_ line: String) {
        storage.withLock { $0.append(line) }
    }

    var lines: [String] {
        storage.withLock { $0 }
    }
}

/// A routing table as the supervisor writes it.
struct Routes {
    var version: Int
    var pools: [String: Int]
    var customers: [String: String]
    /// Each pool's body limit in bytes; nil leaves the key out (an older supervisor).
    var maxBodyBytes: [String: Int]?

    var json: String {
        var object: [String: Any] = ["version": version, "pools": pools, "customers": customers]
        if let maxBodyBytes { object["max_body_bytes"] = maxBodyBytes }
        let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// A port nothing listens on: bound, then closed.
func closedPort() throws -> Int {
    let (fd, port) = try Sockets.listenTCP(host: "127.0.0.1", port: 0)
    close(fd)
    return port
}

/// Waits up to `seconds` for `condition`, checking every 10 ms; whether it held.
func eventually(within seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// Listening sockets for tests that build an `IngressServer` by hand.
enum BulkheadCoreSockets {
    static func listen() throws -> (Int32, Int) {
        try Sockets.listenTCP(host: "127.0.0.1", port: 0)
    }
}
