import ArgumentParser
import BulkheadCore
import Foundation
import Logging
import ControlAPI
import HostMetrics
import Supervisor

/// `bulkhead serve`: the supervisor.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Start the supervisor and one worker pool per cohort.",
        discussion: """
            Reads every cohorts/*.toml. A bad cohort file stops the first start with a message naming \
            the file and key; later, that pool falls back to its last known good config. If another \
            supervisor's workers are alive on the data directory, they are adopted, not restarted.
            """
    )

    @Option(help: "The directory of cohort files.")
    var cohorts: String = "cohorts"
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "A scripts directory: CUSTOMER/NAME.lua files and customers.toml (CUSTOMER = \"COHORT\"), polled for changes.")
    var scripts: String?
    @Flag(help: "Seed demo-free, demo-pro and demo-enterprise, each with a hello script.")
    var demo = false
    @Option(help: "Address of the control API; port 0 picks a free one.")
    var api: String = "127.0.0.1:8080"
    @Option(help: "Address of the ingress (routes by customer to its pool); 'off' runs none.")
    var ingress: String = "127.0.0.1:8100"
    @Option(help: ArgumentHelp(
        "Address of the host's own /metrics and /healthz; port 0 picks a free one; 'off' serves none.",
        discussion: "Served on a listener of its own, whether the control API is up, flooded or not. "
            + "/healthz answers 200 when every pool has a ready worker, else 503 naming the pools that have none."))
    var metrics: String = "127.0.0.1:8090"
    @Option(help: ArgumentHelp(
        "Most connections the control API holds at once; a new one beyond it displaces the longest idle one.",
        discussion: "Default: the smallest of 1024 and a quarter of the descriptor limit (serve raises its soft ulimit -n to the hard one). Either way, "
            + "descriptors for replacing every worker stay free."))
    var apiMaxConnections: Int?
    @Option(help: "Most control API connections one client address may hold (default: half the cap, at most 256).")
    var apiMaxConnectionsPerPeer: Int?
    @Option(help: ArgumentHelp(
        "Seconds a control API connection may go without a request in progress before it is closed.",
        discussion: "Counted from its accept to its first complete request head, and between requests."))
    var apiHeadTimeout: Double = APIConnectionLimits.defaultHeadTimeout
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func validate() throws {
        if let apiMaxConnections, apiMaxConnections < 1 { throw ValidationError("--api-max-connections must be at least 1") }
        if let apiMaxConnectionsPerPeer, apiMaxConnectionsPerPeer < 1 {
            throw ValidationError("--api-max-connections-per-peer must be at least 1")
        }
        if metrics != "off" { _ = try Self.split(address: metrics, option: "--metrics") }
        guard apiHeadTimeout > 0, apiHeadTimeout.isFinite else {
            throw ValidationError("--api-head-timeout must be a positive number of seconds")
        }
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
            cohortsDirectory: cohorts, data: DataDirectory(dataOptions.data), scriptsDirectory: scripts, demo: demo,
            workerExecutable: Self.ownExecutable(),
            workerEnvironment: ProcessInfo.processInfo.environment.compactMap { key, value in
                key.hasPrefix("BULKHEAD_FAULT") ? "\(key)=\(value)" : nil
            })
        var settings = configuration
        if ingress != "off" {
            let (host, port) = try Self.split(address: ingress, option: "--ingress")
            settings.ingress = (host, port)
        }
        let supervisor = Supervisor(configuration: settings, logger: logger)
        do {
            try supervisor.start()
        } catch {
            FileHandle.standardError.write(Data("bulkhead serve: \(ControlCharacters.escaped("\(error)"))\n".utf8))
            throw ExitCode.failure
        }
        // The host's own metrics, before the API: its descriptors count as in use
        // when the API's cap is computed. A bind that fails is logged, and the host
        // serves on without it (as without the API).
        var metricsServer: HostMetricsServer?
        var metricsReserve = 0
        if metrics != "off" {
            let (metricsHost, metricsPort) = try Self.split(address: metrics, option: "--metrics")
            do {
                let server = try HostMetricsServer.start(host: metricsHost, port: metricsPort, supervisor: supervisor, logger: logger)
                supervisor.metricsListening(on: "\(metricsHost):\(server.port)")
                metricsServer = server
                metricsReserve = HostMetricsServer.defaultMaxConnections
            } catch {
                logger.error("host metrics cannot listen; serving without them", metadata: ["address": "\(metrics)", "error": "\(error)"])
            }
        }
        defer { metricsServer?.stop() }
        let (host, port) = try Self.split(address: api, option: "--api")
        let apiLogger = Logger(label: "bulkhead.api")
        let (connections, warnings) = APIConnectionLimits.resolve(
            maxConnections: apiMaxConnections, maxPerPeer: apiMaxConnectionsPerPeer, headTimeout: apiHeadTimeout,
            descriptorLimit: Descriptors.limit(), descriptorsInUse: Descriptors.openCount() ?? 0,
            // control.sock and admin.sock hold their own budgets: never taken by TCP.
            reserved: supervisor.descriptorsToKeepFree() + metricsReserve + 2 * APIConnectionLimits.localSocket.acceptCeiling)
        for warning in warnings { apiLogger.warning("\(warning)") }
        let servers = APIServers(host: host, port: port, connections: connections)
        let data = settings.data
        // The group runs on Swift's concurrency; this thread only waits for it to end,
        // which is after requests in flight finished and the supervisor drained.
        let finished = DispatchSemaphore(value: 0)
        Task {
            do {
                try await servers.run(supervisor: supervisor, data: data, logger: apiLogger) { port in
                    supervisor.apiListening(on: "\(host):\(port)")
                    apiLogger.info("control API listening", metadata: [
                        "address": "\(host):\(port)", "max_connections": "\(connections.maxConnections)",
                        "max_connections_per_peer": "\(connections.maxPerPeer)", "head_timeout_s": "\(connections.headTimeout)",
                    ])
                }
            } catch {
                apiLogger.error("API listeners stopped", metadata: ["error": "\(error)"])
                supervisor.stop()
            }
            finished.signal()
        }
        finished.wait()
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
