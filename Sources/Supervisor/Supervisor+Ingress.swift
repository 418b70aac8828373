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
    /// The process, supervised like control's.
    let process: SupervisedChild
    var routesVersion = 0

    init(pidFile: String) {
        process = SupervisedChild(name: "ingress", pidFile: pidFile)
    }
}

extension Supervisor {
    var routesFile: String { configuration.data.run + "/routes.json" }
    var ingressPidFile: String { configuration.data.run + "/ingress.pid" }

    // MARK: - Start and takeover

    /// Binds (or takes back from a live ingress left by a previous supervisor) the
    /// ingress socket and makes sure an ingress process serves it.
    func startIngress(host: String, port: Int) throws {
        let state = IngressState(pidFile: ingressPidFile)
        state.host = host
        helpers.ingress = state
        writeRoutes()
        if let pid = state.process.recordedLiveProcess(command: "ingress") {
            let fd = bh_take_fd(pid, WorkerSpawner.listenDescriptor)
            if fd >= 0 {
                state.listenFD = WorkerSpawner.highDescriptor(fd)
                state.port = (try? Sockets.localPort(of: state.listenFD)) ?? port
                state.process.adopted(pid)
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
        guard let state = helpers.ingress, !agent.shuttingDown else { return }
        do {
            let pid = try WorkerSpawner.spawnProcess(
                arguments: [configuration.workerExecutable, "ingress", "--data", configuration.data.root],
                descriptors: [state.listenFD], log: configuration.data.logs + "/ingress.log",
                environment: configuration.workerEnvironment)
            state.process.started(pid)
        } catch {
            logger.error("cannot start the ingress", metadata: ["error": "\(error)"])
            if state.process.exited(reason: "\(error)", now: Self.now(), logger: logger) { spawnIngress() }
        }
    }

    /// Every tick: notice an ingress that died and restart it with backoff.
    func watchIngress(now: Double) {
        guard let state = helpers.ingress, !agent.shuttingDown else { return }
        if state.process.due(now: now, logger: logger) { spawnIngress() }
    }

    // MARK: - Routing table

    /// Writes the ingress's routing table atomically: pools' ports, customers' pools,
    /// and each pool's body limit (so the ingress refuses a body over the customer's
    /// cohort limit before buffering it, not only the largest cohort's; during a
    /// policy rollout, the largest its slots take).
    /// A customer still moving stays routed to its old pool until its new one is warm.
    func writeRoutes() {
        guard let state = helpers.ingress else { return }
        state.routesVersion += 1
        var customers = replicaFeed.catalog.assignments
        for move in table.pendingMoves.values where move.switchedAt == nil { customers[move.customer] = move.from }
        let table = IngressRoutes(
            version: state.routesVersion, pools: table.pools.mapValues(\.port), customers: customers,
            maxBodyBytes: table.pools.mapValues { largestBodyBytes(of: $0) })
        guard let data = try? table.encoded() else { return }
        let temporary = routesFile + ".tmp"
        if FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) {
            rename(temporary, routesFile)
        }
    }

    /// Stops the ingress on shutdown (SIGTERM: it finishes in-flight requests).
    func stopIngress() {
        helpers.ingress?.process.signal(SIGTERM)
    }
}
