import BulkheadCore
import Foundation

/// Bodies of a fleet on etcd, exchanged between host agents, control processes and
/// the CLI: defined once here, where all of them see them (beside the stage reports
/// they carry).

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
    /// Its report on each running rollout's current stage (what the leader's driver
    /// judges a fleet stage on), by rollout.
    public var stages: [StageReport]
    /// Its report on each script deployment's current step. Absent from hosts built
    /// before deployments.
    public var deployments: [DeploymentReport]

    /// A report.
    public init(host: String, group: String, status: HostStatus, stages: [StageReport] = [], deployments: [DeploymentReport] = []) {
        self.host = host
        self.group = group
        self.status = status
        self.stages = stages
        self.deployments = deployments
    }

    private enum CodingKeys: String, CodingKey {
        case host, group, status, stages, deployments
    }

    /// Decodes a report; one from a host built before deployments has none.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        host = try container.decode(String.self, forKey: .host)
        group = try container.decode(String.self, forKey: .group)
        status = try container.decode(HostStatus.self, forKey: .status)
        stages = try container.decode([StageReport].self, forKey: .stages)
        deployments = try container.decodeIfPresent([DeploymentReport].self, forKey: .deployments) ?? []
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
    /// Its key's value while alive (pid, since when), with the applied revision and
    /// lag of its last report.
    public var listing: HostListing?
    /// When its last report arrived, nil if none did since this control process led.
    public var reportedAt: Date?
    /// Its last report's status (pools, overrides, feed), nil without a report.
    public var status: HostStatus?
    /// Its last report's stage reports, one per running rollout.
    public var stages: [StageReport]

    /// A host's line.
    public init(
        name: String, group: String, alive: Bool, listing: HostListing?, reportedAt: Date?, status: HostStatus?, stages: [StageReport] = []
    ) {
        self.name = name
        self.group = group
        self.alive = alive
        self.listing = listing
        self.reportedAt = reportedAt
        self.status = status
        self.stages = stages
    }
}
