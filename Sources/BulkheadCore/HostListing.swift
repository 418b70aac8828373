import Foundation

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
