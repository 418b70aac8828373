import ArgumentParser
import BulkheadCore
import Etcd
import EtcdStore
import Foundation
import Store

/// `bulkhead host`: the hosts of a fleet, read from its store in etcd.
struct HostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "List, cordon and uncordon the hosts of a fleet on etcd.",
        subcommands: [List.self, Cordon.self, Uncordon.self]
    )

    /// Cordons or uncordons `name` in the fleet's store, audited as this user.
    static func setCordoned(_ name: String, _ cordoned: Bool, _ options: EtcdOptions) throws {
        guard options.endpoints != nil else { throw ValidationError("host \(cordoned ? "cordon" : "uncordon") needs --etcd URLS") }
        let store = FleetConnection.store(options)
        FleetConnection.run(cordoned ? "cordon \(name)" : "uncordon \(name)") {
            try store.setCordoned(name, cordoned, actor: "etcd-operator:\(FleetConnection.actor)")
        }
        print(cordoned
              ? "\(name): cordoned; rollouts neither plan it nor wait for it (it still follows what the fleet decided)"
              : "\(name): uncordoned; it takes part in the next stages that name it, and the next rollouts")
    }

    struct Cordon: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a host out of fleet rollouts (a dead one, say): new plans skip it, running stages stop waiting for it.",
            discussion: "Written straight to the fleet's store (setting/cordon.NAME), audited. The host, if alive, keeps following the fleet's versions.")
        @Argument(help: "The host's name.") var name: String
        @OptionGroup var etcdOptions: EtcdOptions
        func run() throws { try HostCommand.setCordoned(name, true, etcdOptions) }
    }

    struct Uncordon: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring a cordoned host back into fleet rollouts.",
            discussion: "It follows the fleet's versions all along (caught up through its feed); from now on stages that name it wait for it and count it.")
        @Argument(help: "The host's name.") var name: String
        @OptionGroup var etcdOptions: EtcdOptions
        func run() throws { try HostCommand.setCordoned(name, false, etcdOptions) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the fleet's live hosts: group, pid, since when, cordoned.",
            discussion: """
                A host is listed while its agent (`bulkhead serve --etcd … --host NAME`) holds its key \
                PREFIX/host/NAME on its lease: one that stopped is gone within the lease's 10 s. Read from \
                etcd alone, so it works with no control process; how far each host has come (applied \
                revision, lag) is in its reports to the leader: `bulkhead status --etcd`.
                """
        )

        @OptionGroup var etcdOptions: EtcdOptions
        @Flag(help: "Print JSON: {newestChange, hosts: [{name, group, pid, updatedAt}], cordoned: [NAME]}.")
        var json = false

        func validate() throws {
            guard etcdOptions.endpoints != nil else { throw ValidationError("host list needs --etcd URLS") }
        }

        func run() throws {
            guard let configuration = try etcdOptions.configuration() else { return }
            let client = try EtcdClient(configuration: configuration)
            let store = try EtcdStore(client: client, prefix: etcdOptions.prefix)
            let (newest, hosts) = try store.hosts()
            let cordoned = try store.cordonedHosts()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                print(String(decoding: try encoder.encode(HostList(newestChange: newest, hosts: hosts, cordoned: cordoned.sorted())), as: UTF8.self))
                return
            }
            let now = Date()
            print(Table.render([["HOST", "GROUP", "PID", "UP", "CORDONED"]] + hosts.map { host in
                [
                    host.name, host.group, String(host.pid), "\(Int(now.timeIntervalSince(host.updatedAt).rounded())) s",
                    cordoned.contains(host.name) ? "yes" : "no",
                ]
            }))
            let away = cordoned.subtracting(hosts.map(\.name))
            if !away.isEmpty { print("cordoned and not alive: \(away.sorted().joined(separator: ", "))") }
            print("\(hosts.count) host\(hosts.count == 1 ? "" : "s") alive; the store's newest change is revision \(newest)")
        }
    }

    /// What `host list --json` prints.
    struct HostList: Codable {
        var newestChange: Int
        var hosts: [HostListing]
        /// Every host cordoned, alive or not.
        var cordoned: [String]
    }
}
