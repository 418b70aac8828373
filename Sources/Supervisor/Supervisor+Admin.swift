#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Control
import Foundation
import Store

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
        // Bounds each blocking accept, so the loop sees a stop even if the listener
        // is not woken by its shutdown.
        Sockets.setReceiveTimeout(fd, seconds: 0.5)
        let thread = Thread { [self] in
            // The operator's way in: it must outlive any shortage of descriptors
            // (a flood of API connections used them all once, and the thread that
            // returned on that error left every CLI command failing until a restart).
            var retry = AcceptRetry(listener: "admin socket \(path)")
            let log: (String) -> Void = { [logger] line in logger.error("\(line)") }
            while let client = Sockets.acceptRetrying(fd, retry: &retry, log: log, stopped: { adminClosing.load(ordering: .relaxed) }) {
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
        // The socket's mode (0600, in a 0700 run/) is the first guard; the peer's
        // credentials are the second, for a socket whose mode or directory was
        // loosened after it was made. Only this user, or root, commands the host.
        // (Checked after the frame is read, so that closing after the refusal is
        // not a reset that destroys it; the frame itself is never decoded.)
        let peer = try? Sockets.peerUID(of: fd)
        guard let peer, peer == getuid() || peer == 0 else {
            logger.warning("admin socket: refused a client of another user", metadata: ["uid": "\(peer.map(String.init) ?? "unknown")"])
            let refusal = AdminResponse(ok: false, error: "the admin socket answers only uid \(getuid()) (the supervisor's user) and root")
            try? connection.writeFrameNow(ControlCodec.encode(refusal))
            return
        }
        let response: AdminResponse
        if let request = ControlCodec.decode(AdminRequest.self, from: frame) {
            response = perform(request)
        } else {
            response = AdminResponse(ok: false, error: "malformed admin request")
        }
        try? connection.writeFrameNow(ControlCodec.encode(response))
    }

    /// Runs one admin command (off the supervisor queue: commands take it themselves).
    func perform(_ request: AdminRequest) -> AdminResponse {
        let arguments = request.arguments
        func answer<T: Encodable>(_ result: Result<T, ControlError>) -> AdminResponse {
            switch result {
            case .success(let value): AdminResponse(ok: true, result: jsonText(value))
            case .failure(let error): AdminResponse(ok: false, error: error.description)
            }
        }
        func customer() -> Result<Customer, ControlError> {
            let name = arguments["customer"] ?? ""
            guard let found = try? store.customer(named: name) else {
                return .failure(ControlError(status: 404, kind: "not-found", message: "no customer '\(name)'"))
            }
            return .success(found)
        }
        switch request.command {
        case "status":
            return AdminResponse(ok: true, result: jsonText(currentStatus()))
        case "logs":
            return answer(scriptLogLines(customer: arguments["customer"] ?? "", name: arguments["script"] ?? ""))
        case "unquarantine":
            return answer(releaseQuarantine(customer: arguments["customer"] ?? "", name: arguments["script"] ?? "")
                .map { ["released": "\(arguments["customer"] ?? "")/\(arguments["script"] ?? "")"] })
        case "customer-add":
            return answer(addCustomer(name: arguments["name"] ?? "", cohort: arguments["cohort"] ?? "", actor: "operator")
                .map { ["name": $0.0.name, "cohort": $0.0.cohort, "token": $0.1] })
        case "customer-list":
            return answer(listCustomers().map { $0.map { ["name": $0.name, "cohort": $0.cohort] } })
        case "script-put":
            return answer(customer().flatMap { found in
                putScript(customer: found, name: arguments["script"] ?? "", source: Data((arguments["source"] ?? "").utf8),
                          actor: "operator")
            })
        case "script-list":
            if let name = arguments["customer"] {
                return answer(listScripts(customer: name))
            }
            return answer(Result { try store.allScripts() }.mapError(Self.storeFailure))
        case "script-rollback":
            let version = arguments["version"].flatMap { Int($0) }
            return answer(rollbackScript(customer: arguments["customer"] ?? "", name: arguments["script"] ?? "", to: version,
                                         actor: "operator"))
        case "break-glass-freeze", "break-glass-unfreeze":
            let frozen = request.command == "break-glass-freeze"
            return answer(Result { () throws -> BreakGlass.Status in
                try BreakGlass.setFrozen(frozen, store: store, actor: arguments["actor"] ?? "break-glass")
                // The driver takes the freeze in now rather than at its next drive.
                driver?.drive()
                return try BreakGlass.status(store: store)
            }.mapError(Self.controlFailure))
        case "break-glass-plan", "break-glass-rollback":
            guard let kind = ArtifactKind(rawValue: arguments["kind"] ?? "") else {
                return AdminResponse(ok: false, error: "--kind is one of runtime, rules, binary")
            }
            var version: Int?
            if let text = arguments["version"] {
                guard let number = Int(text) else { return AdminResponse(ok: false, error: "--to takes a version number, got '\(text)'") }
                version = number
            }
            let allowRejected = arguments["allow-rejected"] == "true"
            if request.command == "break-glass-plan" {
                return answer(Result { () throws -> BreakGlass.RollbackPlan in
                    let running = queue.sync { runningVersions(of: kind) }
                    return try BreakGlass.plan(kind: kind, to: version, allowRejected: allowRejected, store: store, running: running)
                }.mapError(Self.controlFailure))
            }
            // On the queue, whole: no rollout of the kind may advance or save between
            // the abort written to the store and the pin put on the workers.
            return answer(Result { () throws -> BreakGlass.Status in
                try queue.sync {
                    let pinned = try BreakGlass.rollback(
                        kind: kind, to: version, allowRejected: allowRejected, store: store,
                        actor: arguments["actor"] ?? "break-glass")
                    applyPin(kind, version: pinned)
                }
                return try BreakGlass.status(store: store)
            }.mapError(Self.controlFailure))
        case "break-glass-unpin":
            guard let kind = ArtifactKind(rawValue: arguments["kind"] ?? "") else {
                return AdminResponse(ok: false, error: "--kind is one of runtime, rules, binary")
            }
            return answer(Result { () throws -> BreakGlass.Status in
                try queue.sync {
                    let version = try BreakGlass.unpin(
                        kind: kind, store: store, pools: Array(pools.keys), actor: arguments["actor"] ?? "break-glass")
                    logger.warning("break-glass unpin: the pinned version is now every pool's current one",
                                   metadata: ["kind": "\(kind)", "version": "\(version)"])
                }
                return try BreakGlass.status(store: store)
            }.mapError(Self.controlFailure))
        case "break-glass-status":
            return answer(Result { try BreakGlass.status(store: store) }.mapError(Self.controlFailure))
        case "cohort-move":
            return answer(moveCustomer(arguments["customer"] ?? "", to: arguments["cohort"] ?? "", actor: "operator"))
        case "cohort-scale":
            return answer(scale(pool: arguments["pool"] ?? "", workers: Int(arguments["workers"] ?? "") ?? -1))
        case "rollout-start":
            guard let kind = ArtifactKind(rawValue: arguments["kind"] ?? "") else {
                return AdminResponse(ok: false, error: "--kind is one of runtime, rules, binary")
            }
            return answer(startRollout(kind: kind, content: arguments["content"] ?? "", actor: "operator").map { ["id": $0] })
        case "rollout-list":
            return answer(rolloutSummaries())
        case "rollout-status":
            return answer(rolloutStatus(id: Int(arguments["id"] ?? "") ?? -1))
        case "rollout-pause", "rollout-resume", "rollout-abort", "rollout-promote":
            let command = String(request.command.dropFirst("rollout-".count))
            return answer(operate(rollout: Int(arguments["id"] ?? "") ?? -1, command: command, actor: "operator"))
        default:
            return AdminResponse(ok: false, error: "unknown admin command '\(request.command)'")
        }
    }

    static func controlFailure(_ error: any Error) -> ControlError {
        (error as? ControlError) ?? storeFailure(error)
    }

    /// The last 50 rollouts, newest first.
    public func rolloutSummaries() -> Result<[RolloutSummary], ControlError> {
        (driver.map { $0.records(limit: 50) } ?? Result { try store.rollouts(limit: 50) }.mapError(Self.storeFailure)).map { records in
            records.map { RolloutSummary(id: $0.id, kind: $0.kind.rawValue, version: $0.version, from: $0.fromVersion, status: $0.status) }
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
                    var status = WorkerStatus(slot: worker.slot, pid: worker.pid, ready: worker.ready, adopted: !worker.isChild,
                                              heartbeatAge: now - worker.lastHeartbeat, stats: worker.stats)
                    status.lastLoadedScript = worker.lastLoadedScript
                    return status
                })
        }
        var host = HostStatus(supervisorPID: getpid(), takenAt: Date().timeIntervalSince1970, pools: list, api: apiAddress)
        host.metrics = metricsAddress
        do {
            host.frozen = try store.isFrozen()
            host.pins = try BreakGlass.pins(store: store)
        } catch {
            // Never a reassuring "not frozen" when the store could not say.
            host.breakGlassError = "cannot read the freeze and pins from the store: \(error)"
        }
        host.rollouts = rollouts.values.sorted { $0.id < $1.id }.map {
            "rollout \($0.id): \($0.machine.kind) v\($0.machine.targetVersion): \(Self.statusName($0.machine.state))"
        }
        host.feed = feedStatus()
        if let state = ingress {
            host.ingress = "\(state.host):\(state.port)"
            host.ingressPID = state.pid > 0 ? state.pid : nil
        }
        return host
    }

    /// Per pool, the versions of `kind` its workers report running now (on the queue).
    func runningVersions(of kind: ArtifactKind) -> [String: Set<Int>] {
        pools.mapValues { pool in
            Set(pool.slots.compactMap { $0 }.filter { !$0.exited }.map { worker in
                switch kind {
                case .runtime: worker.stats.versions.runtime
                case .rules: worker.stats.versions.rules
                case .binary: worker.stats.versions.binary
                }
            })
        }
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
        // Whoever answers must be us: a socket another user swapped in (into a run/
        // left open to them) gets no command, break glass included.
        do {
            let peer = try Sockets.peerUID(of: fd)
            guard peer == geteuid() else {
                throw SystemError("\(data.adminSocket) is served by uid \(peer), not by you (uid \(geteuid())); refusing to send it a command",
                                  code: EPERM)
            }
        } catch {
            close(fd)
            throw error
        }
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

/// One line of `rollout list`.
public struct RolloutSummary: Codable, Sendable {
    /// Rollout id.
    public var id: Int
    /// Artifact kind.
    public var kind: String
    /// The version it ships.
    public var version: Int
    /// The version it replaces.
    public var from: Int
    /// Its state.
    public var status: String
}
