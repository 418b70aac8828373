import Foundation

/// Bodies of a fleet on etcd, exchanged between host agents, control processes and
/// the CLI: defined once here, where all of them see them.

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

/// `POST /v1/fleet/hosts/{name}/report`: what a host agent of a fleet sends the
/// leading control process about once a second (health never goes through etcd).
public struct HostReport: Codable, Sendable, Equatable {
    /// The host's name (`--host`): the route's name.
    public var host: String
    /// Its group (`--group`).
    public var group: String
    /// The host at a glance, as `bulkhead status` shows it there: pools and workers
    /// with their counters, quarantines, freeze and pins, the feed.
    public var status: HostStatus

    /// A report.
    public init(host: String, group: String, status: HostStatus) {
        self.host = host
        self.group = group
        self.status = status
    }
}

/// `GET /v1/admin/fleet` (`bulkhead status --etcd`): the fleet's hosts, as the store
/// lists them, with what each last reported to the leading control process.
public struct FleetStatus: Codable, Sendable, Equatable {
    /// The store's newest change (revision).
    public var newestChange: Int
    /// Where the control process that answered listens, and whether it leads (only
    /// the leader receives reports: a follower's hosts carry none).
    public var answeredBy: String?
    /// Whether the control process that answered leads the driver.
    public var leading: Bool
    /// Every host alive or reported lately, by name.
    public var hosts: [FleetHostStatus]

    /// A fleet's status.
    public init(newestChange: Int, answeredBy: String?, leading: Bool, hosts: [FleetHostStatus]) {
        self.newestChange = newestChange
        self.answeredBy = answeredBy
        self.leading = leading
        self.hosts = hosts
    }
}

/// One host in `FleetStatus`.
public struct FleetHostStatus: Codable, Sendable, Equatable {
    /// The host's name.
    public var name: String
    /// Its group.
    public var group: String
    /// Whether it holds its key in the store now (its lease alive).
    public var alive: Bool
    /// Its key's value while alive: pid, applied revision, lag.
    public var listing: HostListing?
    /// When its last report arrived, nil if none did since this control process led.
    public var reportedAt: Date?
    /// Its last report's status (pools, overrides, feed), nil without a report.
    public var status: HostStatus?

    /// A host's line.
    public init(name: String, group: String, alive: Bool, listing: HostListing?, reportedAt: Date?, status: HostStatus?) {
        self.name = name
        self.group = group
        self.alive = alive
        self.listing = listing
        self.reportedAt = reportedAt
        self.status = status
    }
}
