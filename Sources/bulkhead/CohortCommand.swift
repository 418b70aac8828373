import ArgumentParser
import BulkheadCore
import Control
import ControlAPI
import Foundation
import Supervisor

/// `bulkhead cohort`: the pools as cohorts.
struct CohortCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cohort", abstract: "List, show, move customers between, scale and drain cohorts' pools.",
        subcommands: [List.self, Show.self, Move.self, Scale.self, Drain.self])

    static func status(_ options: ClientOptions) throws -> HostStatus {
        try APIClient(options).call(.GET, "/v1/host/status", to: .host, as: HostStatus.self).0
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every cohort with its pool.")
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            let status = try CohortCommand.status(dataOptions)
            if json {
                print(try JSONOutput.line(status.pools))
                return
            }
            print(Table.render([["COHORT", "ORDER", "PORT", "WORKERS", "CONFIG"]] + status.pools.map {
                [$0.name, String($0.order), String($0.port), "\($0.workers.filter(\.ready).count)/\($0.desiredWorkers)", $0.configSource]
            }))
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One cohort's pool and workers.")
        @Argument(help: "The cohort.") var name: String
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            guard let pool = try CohortCommand.status(dataOptions).pools.first(where: { $0.name == name }) else {
                throw ValidationError("no cohort '\(name)'")
            }
            if json {
                print(try JSONOutput.line(pool))
                return
            }
            print("\(pool.name): port \(pool.port), order \(pool.order), \(pool.desiredWorkers) workers, config \(pool.configSource)"
                + (pool.degraded ? ", DEGRADED" : ""))
            print(Table.render([["SLOT", "PID", "READY", "REQUESTS", "RUNTIME", "RULES", "BINARY", "POLICY", "RSS MB"]] + pool.workers.map { worker in
                [String(worker.slot), String(worker.pid), worker.ready ? "yes" : "no", String(worker.stats.requests),
                 String(worker.stats.versions.runtime), String(worker.stats.versions.rules), String(worker.stats.versions.binary),
                 String(worker.stats.versions.policy), String(worker.stats.residentBytes / 1_048_576)]
            }))
        }
    }

    struct Move: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a customer to another cohort: warm on the target pool first, then the ingress switches.")
        @Argument(help: "The customer.") var customer: String
        @Option(help: "The cohort to move to.") var to: String
        @OptionGroup var dataOptions: ClientOptions
        func run() throws {
            _ = try APIClient(dataOptions).call(
                .POST, "/v1/admin/customers/\(APIClient.segment(customer))/move", body: MoveCustomer(cohort: to), to: .control,
                as: CustomerMoved.self, timeout: 60)
            print("\(customer) moved to \(to)")
        }
    }

    struct Scale: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a pool's worker count, live (kept in the store).")
        @Argument(help: "The cohort.") var name: String
        @Option(help: "Workers, 0 to 64.") var workers: Int
        @OptionGroup var dataOptions: ClientOptions
        func run() throws {
            _ = try APIClient(dataOptions).call(
                .POST, "/v1/host/pools/\(APIClient.segment(name))/scale", body: ScalePool(workers: workers), to: .host, as: PoolScaled.self)
            print("\(name) scaled to \(workers) workers")
        }
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a pool taking new connections and let in-flight requests finish (scale to 0).")
        @Argument(help: "The cohort.") var name: String
        @OptionGroup var dataOptions: ClientOptions
        func run() throws {
            _ = try APIClient(dataOptions).call(
                .POST, "/v1/host/pools/\(APIClient.segment(name))/scale", body: ScalePool(workers: 0), to: .host, as: PoolScaled.self)
            print("\(name) drained; bring it back with: bulkhead cohort scale \(name) --workers N")
        }
    }
}
