import BulkheadCore
import Etcd
import Foundation
import Store

// MARK: - The fleet's hosts

extension EtcdStore {
    /// The hosts alive now (a host's key lives on its lease, so a host that stopped
    /// renewing it is gone from the list within the lease's TTL), by name, and the
    /// store's newest change (the revision of `audit/next`, which every change moves),
    /// read at one revision.
    public func hosts() throws -> (newestChange: Int, hosts: [HostListing]) {
        try read("list the fleet's hosts") { reader in try await self.hosts(reader) }
    }

    /// ``hosts()`` for a caller in Swift concurrency.
    public func liveHosts() async throws -> (newestChange: Int, hosts: [HostListing]) {
        do {
            return try await hosts(Reader(store: self))
        } catch {
            throw translate(error, "list the fleet's hosts")
        }
    }

    private func hosts(_ reader: Reader) async throws -> (newestChange: Int, hosts: [HostListing]) {
        let newest = Int(try await reader.get(Keys.auditNext)?.modRevision ?? 0)
        let records = try await reader.list(Keys.host("")).map { try self.decode(EtcdHostPresence.Record.self, $0) }
        let hosts = records.sorted { $0.name < $1.name }.map { record in
            // Liveness only: how far each host has come is in its reports to the leader.
            HostListing(name: record.name, group: record.group, pid: record.pid, appliedRevision: nil, lag: nil, updatedAt: record.updatedAt)
        }
        return (newest, hosts)
    }
}
