import ArgumentParser
import Etcd
import EtcdStore
import BulkheadCore
import Foundation

/// `bulkhead host`: the hosts of a fleet, read from its store in etcd.
struct HostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "List the hosts of a fleet on etcd.",
        subcommands: [List.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the fleet's live hosts: group, pid, applied revision, lag, last report.",
            discussion: """
                A host is listed while its agent (`bulkhead serve --etcd … --host NAME`) holds its key \
                PREFIX/host/NAME on its lease: one that stopped is gone within the lease's 10 s. LAG is \
                how many revisions its replica is behind the store's newest change (0: caught up).
                """
        )

        @OptionGroup var etcdOptions: EtcdOptions
        @Flag(help: "Print JSON: {newestChange, hosts: [{name, group, pid, appliedRevision, lag, updatedAt}]}.")
        var json = false

        func validate() throws {
            guard etcdOptions.endpoints != nil else { throw ValidationError("host list needs --etcd URLS") }
        }

        func run() throws {
            guard let configuration = try etcdOptions.configuration() else { return }
            let client = try EtcdClient(configuration: configuration)
            let store = try EtcdStore(client: client, prefix: etcdOptions.prefix)
            let (newest, hosts) = try store.hosts()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                print(String(decoding: try encoder.encode(HostList(newestChange: newest, hosts: hosts)), as: UTF8.self))
                return
            }
            let now = Date()
            print(Table.render([["HOST", "GROUP", "PID", "APPLIED", "LAG", "REPORTED"]] + hosts.map { host in
                [
                    host.name, host.group, String(host.pid), host.appliedRevision.map(String.init) ?? "-",
                    host.lag.map(String.init) ?? "-", "\(Int(now.timeIntervalSince(host.updatedAt).rounded())) s ago",
                ]
            }))
            print("\(hosts.count) host\(hosts.count == 1 ? "" : "s") alive; the store's newest change is revision \(newest)")
        }
    }

    /// What `host list --json` prints.
    struct HostList: Codable {
        var newestChange: Int
        var hosts: [HostListing]
    }
}
