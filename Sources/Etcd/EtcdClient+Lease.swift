// MARK: Leases

extension EtcdClient {
    /// Grants a lease of `ttl` seconds (with `id`, or one etcd picks when 0). Keys put
    /// with it are deleted when it expires or is revoked.
    public func grantLease(ttl: Int64, id: Int64 = 0) async throws(EtcdError) -> LeaseGrant {
        let request = WireLeaseGrantRequest(TTL: String(ttl), ID: id == 0 ? nil : String(id))
        let answer = try await call("/v3/lease/grant", request, as: WireLeaseGrant.self, repeat: .once)
        guard answer.error.isEmpty else { throw .server(code: 2, message: answer.error) }
        return answer.grant
    }

    /// Renews the lease once (what etcd's keep-alive stream does per message). The
    /// answer's `ttl` is the time to live it now has; 0 or less means the lease is
    /// gone and its keys with it.
    public func keepAliveOnce(_ id: Int64) async throws(EtcdError) -> LeaseTTL {
        // The gateway serves the keep-alive stream as one request: our body is one
        // message, the answer one `{"result": …}` line, and the stream ends.
        let item = try await call(
            "/v3/lease/keepalive", WireLeaseIDRequest(ID: String(id)), as: WireStreamItem<WireLeaseTTL>.self, repeat: .harmless)
        if let error = item.error {
            switch GatewayError(code: error.code, message: error.message).meaning(at: currentEndpoint.absoluteString) {
            case .final(let failure), .tryAnotherMember(let failure): throw failure
            }
        }
        guard let result = item.result else { throw .invalid(message: "a keep-alive answer without a result") }
        var ttl = result.ttl
        if ttl.id == 0 { ttl.id = id }
        return ttl
    }

    /// Revokes the lease: its keys are deleted now. Throws `EtcdError.leaseNotFound`
    /// when it is already gone.
    @discardableResult
    public func revokeLease(_ id: Int64) async throws(EtcdError) -> ResponseHeader {
        try await call("/v3/lease/revoke", WireLeaseIDRequest(ID: String(id)), as: WireHeaderOnly.self, repeat: .once).header
    }

    /// The lease's time to live (`ttl` -1 when it is gone), and its keys when `keys`.
    public func leaseTimeToLive(_ id: Int64, keys: Bool = false) async throws(EtcdError) -> LeaseTTL {
        let request = WireLeaseTimeToLiveRequest(ID: String(id), keys: keys ? true : nil)
        return try await call("/v3/lease/timetolive", request, as: WireLeaseTTL.self, repeat: .harmless).ttl
    }

    /// Keeps the lease alive in the background, renewing it every third of `ttl`
    /// seconds, until `stop()` or until it is lost (see `EtcdLeaseKeeper`).
    public func keepAlive(lease id: Int64, ttl: Int64) -> EtcdLeaseKeeper {
        EtcdLeaseKeeper(client: self, leaseID: id, ttl: ttl)
    }
}
