import Foundation

// MARK: Cluster

extension EtcdClient {
    /// The status of the member the client talks to (or of `endpoint`, that member
    /// only, with no failover): its version, leader, raft index and term, db size.
    /// Asked without requiring a leader, so that a member cut off still answers.
    public func status(of endpoint: URL? = nil) async throws(EtcdError) -> MemberStatus {
        if let endpoint {
            return try await call("/v3/maintenance/status", WireEmpty(), as: WireStatus.self, at: endpoint, requireLeader: false).status
        }
        return try await call("/v3/maintenance/status", WireEmpty(), as: WireStatus.self, repeat: .harmless, requireLeader: false).status
    }

    /// The cluster's members, as the member the client talks to knows them.
    public func memberList() async throws(EtcdError) -> (header: ResponseHeader, members: [Member]) {
        let answer = try await call("/v3/cluster/member/list", WireEmpty(), as: WireMemberList.self, repeat: .harmless)
        return (answer.header, answer.members)
    }
}

// MARK: Auth

extension EtcdClient {
    /// Adds a user. Without a password (`nil`), the user can only be one by its
    /// client certificate's CN (etcd's `--client-cert-auth`).
    public func addUser(_ name: String, password: String?) async throws(EtcdError) {
        let request = WireAuthUserAdd(
            name: name, password: password ?? "", options: password == nil ? .init(no_password: true) : nil)
        _ = try await call("/v3/auth/user/add", request, as: WireHeaderOnly.self, repeat: .once)
    }

    /// Adds a role (with no permission yet).
    public func addRole(_ name: String) async throws(EtcdError) {
        _ = try await call("/v3/auth/role/add", WireAuthName(name: name), as: WireHeaderOnly.self, repeat: .once)
    }

    /// Lets `role` read, write or both on `key` (or, with `prefix`, on every key
    /// starting with it).
    public func grantPermission(
        role: String, _ permission: Permission, key: some EtcdBytes, prefix: Bool = false
    ) async throws(EtcdError) {
        let bytes = key.etcdBytes
        let type: String
        switch permission {
        case .read: type = "READ"
        case .write: type = "WRITE"
        case .readWrite: type = "READWRITE"
        }
        let request = WireAuthRoleGrant(
            name: role,
            perm: .init(
                permType: type, key: base64(prefix && bytes.isEmpty ? [0] : bytes),
                range_end: prefix ? base64(EtcdKeyRange.prefixEnd(bytes)) : nil))
        _ = try await call("/v3/auth/role/grant", request, as: WireHeaderOnly.self, repeat: .harmless)
    }

    /// Gives `user` the role's permissions.
    public func grantRole(user: String, role: String) async throws(EtcdError) {
        _ = try await call("/v3/auth/user/grant", WireAuthUserGrantRole(user: user, role: role), as: WireHeaderOnly.self, repeat: .harmless)
    }

    /// Turns authentication on (the user `root`, with the role `root`, must exist).
    public func enableAuth() async throws(EtcdError) {
        _ = try await call("/v3/auth/enable", WireEmpty(), as: WireHeaderOnly.self, repeat: .harmless)
    }

    /// Turns authentication off (as `root`).
    public func disableAuth() async throws(EtcdError) {
        _ = try await call("/v3/auth/disable", WireEmpty(), as: WireHeaderOnly.self, repeat: .harmless)
    }
}
