import Foundation

/// One host of the fleet: its key in the store (`bulkhead host list`), with its
/// progress from its reports when the leader lists it (`status --etcd`).
public struct HostListing: Codable, Sendable, Equatable {
    /// The host's name (`--host`).
    public var name: String
    /// Its group (`--group`).
    public var group: String
    /// Its agent's process id.
    public var pid: Int32
    /// The store revision its replica reflects, as its last health report to the
    /// leader said; nil without one, and in a listing read from etcd alone (`host
    /// list`): a host's key says it is alive, not how far it has come.
    public var appliedRevision: Int?
    /// Revisions between that and the store's newest change (0: caught up; nil with
    /// no applied revision).
    public var lag: Int?
    /// When the host wrote its key: its agent's start, or its lease granted anew.
    public var updatedAt: Date

    /// A listing.
    public init(name: String, group: String, pid: Int32, appliedRevision: Int?, lag: Int?, updatedAt: Date) {
        self.name = name
        self.group = group
        self.pid = pid
        self.appliedRevision = appliedRevision
        self.lag = lag
        self.updatedAt = updatedAt
    }
}
