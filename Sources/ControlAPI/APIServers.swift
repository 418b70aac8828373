#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Hummingbird
import Logging
import ServiceLifecycle
import Store
import Control
import Supervisor

/// Everything `bulkhead control` answers on, as services of one `ServiceGroup`: the
/// control router on TCP (`--api`) and on `DATA/run/control.sock`, and the control
/// plane (driver, poller). SIGTERM (or SIGINT) shuts the group down gracefully: the
/// listeners stop accepting, requests in flight finish, then the plane stops.
public struct ControlServers {
    /// Where the control API listens on TCP.
    public var host: String
    /// Its port; 0 picks a free one.
    public var port: Int
    /// What clients of the TCP listener can make it hold.
    public var connections: APIConnectionLimits
    /// Longest the group waits for requests in flight once asked to stop.
    public var gracefulShutdownLimit: Duration = .seconds(30)

    /// The servers of `host:port`.
    public init(host: String, port: Int, connections: APIConnectionLimits) {
        self.host = host
        self.port = port
        self.connections = connections
    }

    /// Runs until the group is shut down (a signal). `onRunning` receives the TCP
    /// listener's real port. A TCP address that cannot be bound ends the group
    /// with an error (the agent restarts control with backoff).
    public func run(
        plane: ControlPlane, data: DataDirectory, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        // One responder, one route table, two listeners.
        let responder = ControlAPI.router(operations: ControlOperations(plane: plane)).buildResponder()
        let tcpGuard = APIConnectionGuard(limits: connections, logger: logger)
        // control.sock has its own guard and accept ceiling: a TCP flood never holds
        // the operator's slots (or the agent's health checks).
        let tcp = Application(
            responder: responder,
            server: .http1(configuration: .init(additionalChannelHandlers: [tcpGuard.makeHandler()])),
            configuration: .init(
                address: .hostname(host, port: port), serverName: "bulkhead",
                availableConnectionsDelegate: .maximum(connections.acceptCeiling, logger: logger)),
            onServerRunning: { [port] channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
        // A socket file left by a control that died (SIGKILL) would refuse the bind;
        // control.lock is held, so no other control serves it.
        unlink(data.controlSocket)
        let control = localSocketApplication(
            responder: responder, path: data.controlSocket, name: "the control socket", logger: logger)
        // Shut down in reverse: the listeners first (requests in flight finish), the
        // plane last. A TCP listener that fails (its address taken) ends the group:
        // the agent sees control exit and restarts it with backoff.
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: ControlPlaneService(plane: plane, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: Listener(name: "control socket", application: control, logger: logger), successTerminationBehavior: .ignore),
                .init(service: Listener(name: "control API", application: tcp, logger: logger, fatal: true),
                      successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
            .with(maxGracefulShutdown: gracefulShutdownLimit))
        defer { unlink(data.controlSocket) }
        try await group.run()
    }
}

/// What `bulkhead serve` answers on: the host routes on `DATA/run/admin.sock`, and
/// the supervisor, in one `ServiceGroup`. SIGTERM lets requests in flight finish,
/// then the supervisor drains its pools (and stops its control child).
public struct HostServers {
    /// Longest the group waits for requests in flight once asked to stop.
    public var gracefulShutdownLimit: Duration = .seconds(30)

    /// The host's servers.
    public init() {}

    /// Runs until the group is shut down (a signal, or the supervisor stopping).
    public func run(supervisor: Supervisor, data: DataDirectory, logger: Logger) async throws {
        let admin = localSocketApplication(
            responder: HostRoutes.router(operations: HostOperations(supervisor: supervisor)).buildResponder(),
            path: data.adminSocket, name: "the admin socket", logger: logger)
        // The supervisor has no signal handler of its own: one that drained on SIGTERM
        // would finish before the listener, and the group cancels everything when a
        // service ends out of turn, cutting those requests. A supervisor stopped some
        // other way shuts the group down gracefully.
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: SupervisorService(supervisor: supervisor, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: Listener(name: "admin socket", application: admin, logger: logger), successTerminationBehavior: .ignore),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
            .with(maxGracefulShutdown: gracefulShutdownLimit))
        defer { unlink(data.adminSocket) }
        try await group.run()
    }
}

/// The control plane as a service: it runs until the group shuts down, then stops
/// its driver and poller (after the listeners finished their requests in flight).
struct ControlPlaneService: Service {
    let plane: ControlPlane
    let logger: Logger

    func run() async throws {
        // Parked until the shutdown; the plane's work runs on its own queues.
        let (stream, continuation) = AsyncStream<Void>.makeStream()
        await withGracefulShutdownHandler {
            for await _ in stream {}
        } onGracefulShutdown: {
            logger.info("API requests in flight finished; stopping the control plane")
            plane.stop()
            continuation.finish()
        }
    }
}

/// The supervisor as a service: it runs until it has stopped, and a graceful
/// shutdown of the group asks it to drain. Being first in the group, it hears that
/// only after every listener has finished its requests in flight.
struct SupervisorService: Service {
    let supervisor: Supervisor
    let logger: Logger

    func run() async throws {
        await withGracefulShutdownHandler {
            await offQueue { supervisor.wait() }
        } onGracefulShutdown: {
            logger.info("API requests in flight finished; draining workers")
            supervisor.stop()
        }
    }
}

/// One listener as a service. A listener that fails (its address taken) is logged;
/// a `fatal` one then fails the group, others leave the rest running.
struct Listener<App: ApplicationProtocol>: Service {
    let name: String
    let application: App
    let logger: Logger
    var fatal = false

    func run() async throws {
        do {
            try await application.run()
        } catch {
            logger.error("\(name) stopped", metadata: ["error": "\(error)"])
            if fatal { throw error }
        }
    }
}

extension ServiceGroupConfiguration {
    func with(maxGracefulShutdown limit: Duration) -> Self {
        var configuration = self
        configuration.maximumGracefulShutdownDuration = limit
        return configuration
    }
}

/// A listener on a Unix socket of the data directory (`control.sock`, `admin.sock`):
/// mode 0600, the peer's uid checked as each connection opens, and a connection
/// budget of its own (`APIConnectionLimits.localSocket`), so a flood of the TCP
/// listener never holds the operator's slots or the agent's health checks.
func localSocketApplication<Responder: HTTPResponder>(
    responder: Responder, path: String, name: String, logger: Logger
) -> some ApplicationProtocol where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    let limits = APIConnectionLimits.localSocket
    let connectionGuard = APIConnectionGuard(limits: limits, logger: logger)
    return Application(
        responder: responder,
        server: .http1(configuration: .init(additionalChannelHandlers: [
            PeerCredentialsHandler(socketName: name, logger: logger), connectionGuard.makeHandler(),
        ])),
        configuration: .init(
            address: .unixDomainSocket(path: path), serverName: "bulkhead",
            availableConnectionsDelegate: .maximum(limits.acceptCeiling, logger: logger)),
        onServerRunning: { _ in chmod(path, 0o600) },
        logger: logger)
}
