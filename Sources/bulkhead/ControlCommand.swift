#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BulkheadCore
import CBulkheadPosix
import Control
import ControlAPI
import Etcd
import EtcdStore
import Foundation
import Logging
import Store

/// `bulkhead control`: the control plane in its own process.
struct ControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Run the control plane: the control API, the rollout driver, the scripts-directory poller, --demo.",
        discussion: """
            The only writer of DATA/bulkhead.sqlite. Serves the control routes on --api (tokens) and on \
            DATA/run/control.sock (this user only). Holds DATA/run/control.lock while it runs: a second \
            control on the same data directory exits 1 naming the holder, so two rollout drivers never run. \
            `bulkhead serve` starts it as a supervised child; run it alone only without serve.

            With --etcd, the store is the fleet's, in etcd under --etcd-prefix, and any number of \
            control processes may run (each with its own --data): all serve the API; the rollout \
            driver runs in the one that wins the election on PREFIX/driver/leader (a lease of 5 s), \
            and its writes are fenced by that leadership, so a leader paused past its lease writes \
            nothing once it resumes. The leader also keeps the store: every --etcd-housekeeping-interval \
            it compacts etcd's history to the newest --etcd-keep-revisions and removes contents no \
            version refers to.
            """
    )

    @OptionGroup var plane: ControlPlaneOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var apiOptions: APIOptions
    @OptionGroup var etcdOptions: EtcdOptions
    @Option(help: "With --etcd: seconds between the leader's upkeep rounds (compaction, then unreferenced contents removed).")
    var etcdHousekeepingInterval: Double = 300
    @Option(help: "With --etcd: revisions of history the upkeep keeps; a host further behind copies the store whole.")
    var etcdKeepRevisions: Int64 = 10_000
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func validate() throws {
        _ = try ServeCommand.split(address: apiOptions.api, option: "--api")
        guard etcdHousekeepingInterval > 0, etcdKeepRevisions >= 0 else {
            throw ValidationError("--etcd-housekeeping-interval must be above 0 and --etcd-keep-revisions 0 or more")
        }
    }

    func run() throws {
        // Nothing inherited past stdio: a descriptor the agent's own parent left open
        // (a pipe someone waits on for EOF) must not live on in a process that
        // outlives the agent.
        bh_close_from(3)
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return EscapingLogHandler(handler)
        }
        let logger = Logger(label: "bulkhead.control")
        Descriptors.raiseToHardLimit()
        let data = DataDirectory(dataOptions.data)
        // The lock first, held for the whole life of the process: two drivers never
        // run on one data directory (an orphaned control and its replacement).
        let lock: PidLock
        do {
            try data.create()
            lock = try PidLock.take(data.controlLock)
        } catch let held as PidLock.Held {
            Self.exit("another bulkhead control (pid \(held.holder)) holds \(data.controlLock); stop it or use another --data")
        } catch {
            Self.exit("\(error)")
        }
        defer { lock.release() }
        let (host, port) = try ServeCommand.split(address: apiOptions.api, option: "--api")
        var planeConfiguration = ControlPlaneConfiguration(
            cohortsDirectory: plane.cohorts, data: data, scriptsDirectory: plane.scripts, demo: plane.demo,
            checkerExecutable: ServeCommand.ownExecutable())
        var fleet: (store: EtcdStore, election: EtcdElection)?
        var housekeeping: EtcdHousekeeping?
        do {
            if let etcd = try etcdOptions.configuration() {
                let opened = try Self.useEtcd(etcd, prefix: etcdOptions.prefix, api: apiOptions.api, for: &planeConfiguration)
                fleet = opened
                // The leader keeps the store: history compacted, unreferenced contents removed.
                let upkeep = EtcdHousekeeping(
                    store: opened.store, keepRevisions: etcdKeepRevisions, leads: { opened.election.isLeading },
                    report: { outcome in
                        switch outcome {
                        case .success(let round):
                            logger.info("etcd upkeep", metadata: [
                                "compacted_to": "\(round.compactedTo.map(String.init) ?? "-")",
                                "removed_contents": "\(round.garbage.removedBlobs)", "kept_contents": "\(round.garbage.keptBlobs)",
                            ])
                        case .failure(let error):
                            logger.warning("etcd upkeep failed; next round at the next interval", metadata: ["error": "\(error)"])
                        }
                    })
                upkeep.start(interval: etcdHousekeepingInterval)
                housekeeping = upkeep
            }
        } catch {
            Self.exit("\(error)")
        }
        let plane = ControlPlane(configuration: planeConfiguration, logger: logger)
        do {
            try plane.start()
        } catch {
            Self.exit("\(error)")
        }
        let (connections, warnings) = APIConnectionLimits.resolve(
            maxConnections: apiOptions.apiMaxConnections, maxPerPeer: apiOptions.apiMaxConnectionsPerPeer,
            headTimeout: apiOptions.apiHeadTimeout,
            descriptorLimit: Descriptors.limit(), descriptorsInUse: Descriptors.openCount() ?? 0,
            // control.sock holds its own budget: never taken by TCP. Checks run as
            // child processes and take a few descriptors each while they run.
            reserved: APIConnectionLimits.localSocket.acceptCeiling + 64)
        for warning in warnings { logger.warning("\(warning)") }
        let servers = ControlServers(host: host, port: port, connections: connections)
        // The group runs on Swift's concurrency; this thread only waits for it to end,
        // which is after requests in flight finished and the plane stopped.
        let finished = DispatchSemaphore(value: 0)
        let failed = LockedFlag()
        let seat = fleet
        Task {
            do {
                try await servers.run(plane: plane, data: data, logger: logger) { port in
                    plane.apiListening(on: "\(host):\(port)")
                    // A candidate for the driver only once its API listens: the leader's
                    // listing is where hosts send their health and the CLI's --etcd its requests.
                    if let seat { seat.election.start(as: seat.store.candidate(api: Self.advertised(host: host, port: port))) }
                    logger.info("control API listening", metadata: [
                        "address": "\(host):\(port)", "max_connections": "\(connections.maxConnections)",
                        "max_connections_per_peer": "\(connections.maxPerPeer)", "head_timeout_s": "\(connections.headTimeout)",
                    ])
                }
            } catch {
                logger.error("control API stopped", metadata: ["error": "\(error)"])
                failed.set()
            }
            plane.stop()
            housekeeping?.stop()
            await seat?.election.stop()
            finished.signal()
        }
        finished.wait()
        if failed.isSet { throw ExitCode.failure }
    }

    /// Points the plane at the fleet's store in etcd: the API's writes through one
    /// store, the driver's through another fenced by its leadership, which an
    /// election among the control processes decides (started here).
    static func useEtcd(
        _ etcd: EtcdConfiguration, prefix: String, api: String, for configuration: inout ControlPlaneConfiguration
    ) throws -> (store: EtcdStore, election: EtcdElection) {
        let client = try EtcdClient(configuration: etcd)
        let store = try EtcdStore(client: client, prefix: prefix)
        let election = EtcdElection(client: client, key: store.driverLeaderKey, candidate: store.candidate(api: api))
        var fenced = EtcdStoreConfiguration()
        fenced.fence = { election.fence }
        let driverStore = try EtcdStore(client: client, prefix: prefix, configuration: fenced)
        configuration.storeLocation = store.location
        configuration.openStore = { store }
        configuration.openDriverStore = { driverStore }
        configuration.driverLeads = { election.isLeading }
        configuration.fleet = store
        return (store, election)
    }

    /// The address other machines reach the API at: a wildcard bind is the machine's name.
    static func advertised(host: String, port: Int) -> String {
        let wildcard = ["0.0.0.0", "::", "[::]", ""].contains(host)
        return "\(wildcard ? ProcessInfo.processInfo.hostName : host):\(port)"
    }

    /// Prints `bulkhead control: message` on stderr and exits 1.
    static func exit(_ message: String) -> Never {
        FileHandle.standardError.write(Data("bulkhead control: \(ControlCharacters.escaped(message))\n".utf8))
        Bulkhead.exit(withError: ExitCode.failure)
    }
}

/// A flag set once from another task.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
