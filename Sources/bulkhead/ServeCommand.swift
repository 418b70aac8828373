import ArgumentParser
import BulkheadCore
import Control
import ControlAPI
import Etcd
import EtcdStore
import Foundation
import HostMetrics
import Logging
import Rollout
import Supervisor
import Synchronization

/// `bulkhead serve`: the supervisor.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Start the host agent: one worker pool per cohort, the ingress, and the control plane as a child.",
        discussion: """
            Reads every cohorts/*.toml. A bad cohort file stops the first start with a message naming \
            the file and key; later, that pool falls back to its last known good config. If another \
            supervisor's workers are alive on the data directory, they are adopted, not restarted. \
            The control plane runs as `bulkhead control` (given --api, --scripts, --demo and the API \
            options), restarted with backoff when it exits, killed and replaced when it stops answering \
            its health checks on DATA/run/control.sock, and adopted, not restarted, by a new serve. \
            serve itself answers the host routes on DATA/run/admin.sock and --metrics.

            With --etcd, the host is one of a fleet: it follows the control store on etcd by watch (a \
            full copy at one revision when etcd compacted past it), holds its presence at host/NAME on a \
            lease, serves its replica while etcd is unreachable, and starts no control plane (run \
            `bulkhead control --etcd` on its own).
            """
    )

    @OptionGroup var plane: ControlPlaneOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var apiOptions: APIOptions
    @Option(help: "Address of the ingress (routes by customer to its pool); 'off' runs none.")
    var ingress: String = "127.0.0.1:8100"
    @Option(help: ArgumentHelp(
        "Address of the host's own /metrics and /healthz; port 0 picks a free one; 'off' serves none.",
        discussion: "Served on a listener of its own, whether the control API is up, flooded or not. "
            + "/healthz answers 200 when every pool has a ready worker, else 503 naming the pools that have none."))
    var metrics: String = "127.0.0.1:8090"
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"
    @OptionGroup var etcd: EtcdOptions
    @Option(help: "This host's name in the fleet (with --etcd): its key host/NAME and its reports.")
    var host: String?
    @Option(help: "This host's group in the fleet (with --etcd): rollouts widen group by group.")
    var group: String = "default"

    func validate() throws {
        if etcd.endpoints != nil {
            guard let host, !host.isEmpty else { throw ValidationError("--etcd needs --host NAME: this host's name in the fleet") }
            if plane.scripts != nil || plane.demo {
                throw ValidationError("--scripts and --demo belong to `bulkhead control --etcd`: serve --etcd starts no control plane")
            }
        } else if host != nil {
            throw ValidationError("--host names a host of a fleet: it goes with --etcd")
        }
        if metrics != "off" { _ = try Self.split(address: metrics, option: "--metrics") }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return EscapingLogHandler(handler)
        }
        let logger = Logger(label: "bulkhead.supervisor")
        // Before anything opens: the workers, the ingress and the API's cap all
        // start from the limit in force.
        Descriptors.raiseToHardLimit()
        let configuration = SupervisorConfiguration(
            cohortsDirectory: plane.cohorts, data: DataDirectory(dataOptions.data),
            workerExecutable: Self.ownExecutable(),
            workerEnvironment: ProcessInfo.processInfo.environment.compactMap { key, value in
                key.hasPrefix("BULKHEAD_FAULT") ? "\(key)=\(value)" : nil
            })
        var settings = configuration
        if ingress != "off" {
            let (host, port) = try Self.split(address: ingress, option: "--ingress")
            settings.ingress = (host, port)
        }
        let fleet = try openFleet()
        if let fleet {
            // A host of a fleet: the store is etcd, control runs elsewhere.
            settings.localControlStore = false
            settings.openFeed = { fleet.source }
            settings.hostName = fleet.presence.name
        } else {
            // The control plane's own process: it gets what it owns (the API, the scripts
            // directory, --demo) and the same data and cohorts.
            var controlArguments = ["--data", dataOptions.data, "--cohorts", Self.absolute(plane.cohorts), "--log-level", logLevel] + apiOptions.arguments
            if let scripts = plane.scripts { controlArguments += ["--scripts", Self.absolute(scripts)] }
            if plane.demo { controlArguments.append("--demo") }
            settings.control = ControlChildConfiguration(arguments: controlArguments)
        }
        let supervisor = Supervisor(configuration: settings, logger: logger)
        do {
            try supervisor.start()
        } catch {
            FileHandle.standardError.write(Data("bulkhead serve: \(ControlCharacters.escaped("\(error)"))\n".utf8))
            throw ExitCode.failure
        }
        if let fleet {
            fleet.presence.start()
            // Health to the leading control process, over HTTP, once a second.
            let reporter = EtcdHealthReporter(
                store: fleet.store, presence: fleet.presence,
                report: { [host = fleet.presence.name, group = fleet.presence.group] in
                    // The status is taken on the supervisor's queue: never on a Swift-concurrency thread.
                    await withCheckedContinuation { continuation in
                        DispatchQueue.global().async {
                            let (status, stages, deployments) = supervisor.currentReport()
                            continuation.resume(returning: HostReport(
                                host: host, group: group, status: status, stages: stages, deployments: deployments))
                        }
                    }
                },
                problemChanged: { progress in
                    // A stage this host cannot report on is one it cannot confirm.
                    supervisor.leaderReports(failingSince: progress.failingSince)
                    if let problem = progress.problem {
                        logger.warning("health reports do not reach the fleet's leader", metadata: ["problem": "\(problem)"])
                    } else {
                        logger.info("health reports reach the fleet's leader")
                    }
                })
            reporter.start()
            fleet.reporter.withLock { $0 = reporter }
        }
        defer { fleet?.stop() }
        // The host's own metrics: a bind that fails is logged, and the host serves on
        // without them.
        var metricsServer: HostMetricsServer?
        if metrics != "off" {
            let (metricsHost, metricsPort) = try Self.split(address: metrics, option: "--metrics")
            do {
                let server = try HostMetricsServer.start(host: metricsHost, port: metricsPort, supervisor: supervisor, logger: logger)
                supervisor.metricsListening(on: "\(metricsHost):\(server.port)")
                metricsServer = server
            } catch {
                logger.error("host metrics cannot listen; serving without them", metadata: ["address": "\(metrics)", "error": "\(error)"])
            }
        }
        defer { metricsServer?.stop() }
        let data = settings.data
        // The group runs on Swift's concurrency; this thread only waits for it to end,
        // which is after requests in flight finished and the supervisor drained.
        let finished = DispatchSemaphore(value: 0)
        Task {
            do {
                try await HostServers().run(supervisor: supervisor, data: data, logger: Logger(label: "bulkhead.host"))
            } catch {
                logger.error("host routes stopped", metadata: ["error": "\(error)"])
                supervisor.stop()
            }
            finished.signal()
        }
        finished.wait()
    }

    /// With `--etcd`: the client, the feed source and the host's presence (nothing is
    /// read from etcd yet: a host started while etcd is down serves its replica).
    private func openFleet() throws -> FleetHost? {
        guard var configuration = try etcd.configuration(), let host else { return nil }
        // The supervisor's queue waits on a full copy's reads: keep one call's worst
        // case (connect + answer + going round the members) to a few seconds.
        configuration.timeouts = .init(connect: .seconds(1), request: .seconds(3), failover: .seconds(3))
        do {
            let client = try EtcdClient(configuration: configuration)
            let store = try EtcdStore(client: client, prefix: etcd.prefix)
            let source = EtcdFeedSource(store: store)
            let presence = try EtcdHostPresence(store: store, name: host, group: group)
            return FleetHost(client: client, store: store, source: source, presence: presence)
        } catch {
            throw ValidationError("--etcd: \(error)")
        }
    }

    /// `path` made absolute: the control child may not share this working directory's view forever.
    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// Splits `HOST:PORT`.
    static func split(address: String, option: String) throws -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (0...65_535).contains(port), colon != address.startIndex
        else { throw ValidationError("\(option) takes HOST:PORT, got '\(address)'") }
        return (String(address[..<colon]), port)
    }

    /// The path of this executable, so workers run the same build.
    static func ownExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// What `serve --etcd` holds beside the supervisor.
private final class FleetHost: Sendable {
    let client: EtcdClient
    let store: EtcdStore
    let source: EtcdFeedSource
    let presence: EtcdHostPresence
    /// The health reports, once the supervisor runs.
    let reporter = Mutex<EtcdHealthReporter?>(nil)

    init(client: EtcdClient, store: EtcdStore, source: EtcdFeedSource, presence: EtcdHostPresence) {
        self.client = client
        self.store = store
        self.source = source
        self.presence = presence
    }

    /// Stops the reports, gives the key up (its lease revoked) and closes the watch,
    /// waiting at most 3 s.
    func stop() {
        let done = DispatchSemaphore(value: 0)
        let reporter = reporter.withLock { $0 }
        Task.detached { [presence, source, client] in
            await reporter?.stop()
            await presence.stop()
            source.close()
            await client.shutdown()
            done.signal()
        }
        _ = done.wait(timeout: .now() + 3)
    }
}
