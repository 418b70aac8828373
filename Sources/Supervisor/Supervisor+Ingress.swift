#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import CBulkheadPosix
import Foundation

/// The ingress as the supervisor sees it: one supervised process, its listening
/// socket (bound once, inherited as descriptor 3), and the routing table file it
/// follows (`DATA/run/routes.json`).
final class IngressState {
    var listenFD: Int32 = -1
    var port = 0
    var host = "127.0.0.1"
    var pid: pid_t = 0
    var isChild = false
    var restartDue: Double?
    var policy = RestartPolicy(CohortConfiguration.Restart(maxRestarts: 5, windowSeconds: 10))
    var routesVersion = 0
}

extension Supervisor {
    var routesFile: String { configuration.data.run + "/routes.json" }
    var ingressPidFile: String { configuration.data.run + "/ingress.pid" }

    // MARK: - Start and takeover

    /// Binds (or takes back from a live ingress left by a previous supervisor) the
    /// ingress socket and makes sure an ingress process serves it.
    func startIngress(host: String, port: Int) throws {
        let state = IngressState()
        state.host = host
        ingress = state
        writeRoutes()
        if let text = try? String(contentsOfFile: ingressPidFile, encoding: .utf8),
           let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1, kill(pid, 0) == 0,
           ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").contains("ingress") {
            let fd = bh_take_fd(pid, WorkerSpawner.listenDescriptor)
            if fd >= 0 {
                state.listenFD = WorkerSpawner.highDescriptor(fd)
                state.port = (try? Sockets.localPort(of: state.listenFD)) ?? port
                state.pid = pid
                state.isChild = false
                logger.info("adopted the ingress", metadata: ["pid": "\(pid)", "address": "\(host):\(state.port)"])
                return
            }
            logger.warning("cannot take the live ingress's socket; replacing it", metadata: ["pid": "\(pid)", "error": "\(SystemError("pidfd_getfd"))"])
            kill(pid, SIGTERM)
            usleep(200_000)
        }
        do {
            let bound = try Sockets.listenTCP(host: host, port: port)
            state.listenFD = WorkerSpawner.highDescriptor(bound.fd)
            state.port = bound.port
        } catch {
            throw SupervisorStartError(description: "ingress: \(error)")
        }
        logger.info("ingress listening", metadata: ["address": "\(host):\(state.port)"])
        spawnIngress()
    }

    func spawnIngress() {
        guard let state = ingress, !shuttingDown else { return }
        state.restartDue = nil
        do {
            let pid = try WorkerSpawner.spawnProcess(
                arguments: [configuration.workerExecutable, "ingress", "--data", configuration.data.root],
                descriptors: [state.listenFD], log: configuration.data.logs + "/ingress.log",
                environment: configuration.workerEnvironment)
            state.pid = pid
            state.isChild = true
            _ = FileManager.default.createFile(atPath: ingressPidFile, contents: Data("\(pid)\n".utf8), attributes: [.posixPermissions: 0o600])
        } catch {
            logger.error("cannot start the ingress", metadata: ["error": "\(error)"])
            ingressExited(reason: "\(error)")
        }
    }

    /// Every tick: notice an ingress that died and restart it with backoff.
    func watchIngress(now: Double) {
        guard let state = ingress, !shuttingDown else { return }
        if let due = state.restartDue {
            if due <= now { spawnIngress() }
            return
        }
        guard state.pid > 0 else { return }
        if state.isChild {
            var status: Int32 = 0
            let result = waitpid(state.pid, &status, WNOHANG)
            if result == state.pid || (result < 0 && errno == ECHILD) {
                ingressExited(reason: status & 0x7f != 0 ? "killed by signal \(status & 0x7f)" : "exited with \((status >> 8) & 0xff)")
            }
        } else if kill(state.pid, 0) != 0 && errno == ESRCH {
            ingressExited(reason: "the adopted ingress is gone")
        }
    }

    private func ingressExited(reason: String) {
        guard let state = ingress else { return }
        state.pid = 0
        let decision = state.policy.workerExited(at: Self.now())
        logger.warning("ingress exited; restarting it", metadata: ["reason": "\(reason)", "delay_s": "\(decision.delay)"])
        if decision.delay == 0 {
            spawnIngress()
        } else {
            state.restartDue = Self.now() + decision.delay
        }
    }

    // MARK: - Routing table

    /// Writes the ingress's routing table atomically: pools' ports, customers' pools,
    /// and each pool's body limit (so the ingress refuses a body over the customer's
    /// cohort limit before buffering it, not only the largest cohort's).
    func writeRoutes(overrides: [String: String] = [:]) {
        guard let state = ingress else { return }
        state.routesVersion += 1
        var customers = catalog.assignments
        for (customer, pool) in overrides { customers[customer] = pool }
        let table = IngressRoutes(
            version: state.routesVersion, pools: pools.mapValues(\.port), customers: customers,
            maxBodyBytes: pools.mapValues { $0.cohort.limits.maxBodyBytes })
        guard let data = try? table.encoded() else { return }
        let temporary = routesFile + ".tmp"
        if FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) {
            rename(temporary, routesFile)
        }
    }

    /// Stops the ingress on shutdown (SIGTERM: it finishes in-flight requests).
    func stopIngress() {
        guard let state = ingress, state.pid > 0 else { return }
        kill(state.pid, SIGTERM)
    }
}
