import Etcd
import Foundation
import Store

// MARK: - The fleet's hosts

/// One host of the fleet as the store shows it (`bulkhead host list`).
public struct HostListing: Codable, Sendable, Equatable {
    /// The host's name (`--host`).
    public var name: String
    /// Its group (`--group`).
    public var group: String
    /// Its agent's process id.
    public var pid: Int32
    /// The store revision its replica reflects (nil before its first copy).
    public var appliedRevision: Int?
    /// Revisions between that and the store's newest change (0: caught up; nil with
    /// no applied revision).
    public var lag: Int?
    /// When the host last wrote its key.
    public var updatedAt: Date
}

extension EtcdStore {
    /// The hosts alive now (a host's key lives on its lease, so a host that stopped
    /// renewing it is gone from the list within the lease's TTL), by name, and the
    /// store's newest change (the revision of `audit/next`, which every change moves),
    /// read at one revision.
    public func hosts() throws -> (newestChange: Int, hosts: [HostListing]) {
        try read("list the fleet's hosts") { reader in
            let newest = Int(try await reader.get(Keys.auditNext)?.modRevision ?? 0)
            let records = try await reader.list(Keys.host("")).map { try self.decode(EtcdHostPresence.Record.self, $0) }
            let hosts = records.sorted { $0.name < $1.name }.map { record in
                HostListing(
                    name: record.name, group: record.group, pid: record.pid, appliedRevision: record.appliedRevision,
                    lag: record.appliedRevision.map { max(0, newest - $0) }, updatedAt: record.updatedAt)
            }
            return (newest, hosts)
        }
    }
}
