#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation

extension Supervisor {
    // MARK: - Admin socket

    /// Serves `DATA/run/admin.sock` (0600): one JSON request frame, one answer frame
    /// per connection. It needs no token: the file mode limits it to this user.
    func startAdminSocket() throws {
        let path = configuration.data.adminSocket
        let fd: Int32
        do {
            fd = try Sockets.listenUnix(path: path)
        } catch {
            throw SupervisorStartError(description: "admin socket: \(error)")
        }
        adminFD = fd
        let thread = Thread { [self] in
            while true {
                guard let client = try? Sockets.accept(fd) else { return }
                DispatchQueue.global().async { self.serveAdmin(client) }
            }
        }
        thread.name = "admin-accept"
        thread.start()
    }

    private func serveAdmin(_ fd: Int32) {
        let connection = FrameConnection(fd: fd)
        Sockets.setTimeouts(fd, seconds: 10)
        guard let frame = try? connection.readFrameNow() else { return }
        let response: AdminResponse
        if let request = ControlCodec.decode(AdminRequest.self, from: frame) {
            response = queue.sync { self.perform(request) }
        } else {
            response = AdminResponse(ok: false, error: "malformed admin request")
        }
        try? connection.writeFrameNow(ControlCodec.encode(response))
    }

    /// Runs one admin command on the supervisor queue.
    func perform(_ request: AdminRequest) -> AdminResponse {
        switch request.command {
        case "status":
            return AdminResponse(ok: true, result: jsonText(status()))
        case "logs":
            let key = "\(request.arguments["customer"] ?? "")/\(request.arguments["script"] ?? "")"
            return AdminResponse(ok: true, result: jsonText(scriptLogs[key] ?? []))
        case "unquarantine":
            guard let customer = request.arguments["customer"], let script = request.arguments["script"] else {
                return AdminResponse(ok: false, error: "unquarantine needs customer and script")
            }
            guard unquarantine(customer: customer, script: script) else {
                return AdminResponse(ok: false, error: "\(customer)/\(script) is not quarantined")
            }
            return AdminResponse(ok: true, result: jsonText(["released": "\(customer)/\(script)"]))
        default:
            return AdminResponse(ok: false, error: "unknown admin command '\(request.command)'")
        }
    }

    /// The host at a glance.
    func status() -> HostStatus {
        let now = Self.now()
        let list = pools.values.sorted { $0.cohort.order < $1.cohort.order }.map { pool in
            PoolStatus(
                name: pool.cohort.name, order: pool.cohort.order, port: pool.port, desiredWorkers: pool.cohort.workers,
                configSource: pool.configSource, configError: pool.configError, degraded: pool.policy.isDegraded,
                restarts: pool.policy.totalRestarts,
                quarantined: quarantined.filter { key in
                    catalog.assignments[String(key.split(separator: "/").first ?? "")] == pool.cohort.name
                }.sorted(),
                workers: pool.slots.compactMap { $0 }.filter { !$0.exited }.map { worker in
                    WorkerStatus(slot: worker.slot, pid: worker.pid, ready: worker.ready, adopted: !worker.isChild,
                                 heartbeatAge: now - worker.lastHeartbeat, stats: worker.stats)
                })
        }
        return HostStatus(supervisorPID: getpid(), takenAt: Date().timeIntervalSince1970, pools: list)
    }

    func jsonText<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "null"
    }
}

/// A client of the admin socket, for the CLI.
public enum AdminClient {
    /// Sends one request and waits for the answer.
    public static func call(_ request: AdminRequest, data: DataDirectory, timeout: Double = 10) throws -> AdminResponse {
        let fd = try Sockets.connectUnix(path: data.adminSocket)
        let connection = FrameConnection(fd: fd)
        Sockets.setTimeouts(fd, seconds: timeout)
        try connection.writeFrameNow(ControlCodec.encode(request))
        let frame = try connection.readFrameNow()
        guard let response = ControlCodec.decode(AdminResponse.self, from: frame) else {
            throw SystemError("admin socket: malformed answer", code: EPROTO)
        }
        return response
    }
}
