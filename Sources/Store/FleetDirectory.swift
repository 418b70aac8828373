import BulkheadCore

/// What a control process of a fleet reads beyond the store's contract: which hosts
/// are alive, and who may act. The etcd store answers it; one machine has no fleet.
public protocol FleetDirectory: Sendable {
    /// The hosts alive now and the store's newest change, read at one revision.
    func liveHosts() async throws -> (newestChange: Int, hosts: [HostListing])
    /// The hash of the report token in host `name`'s own key, nil while the host is
    /// not alive or sends no reports.
    func reportTokenHash(host name: String) async throws -> String?
    /// Who opened the operator session of bearer `token`, nil when none is open.
    func operatorSessionActor(token: String) async throws -> String?
}
