import BulkheadCore
import Etcd
import Foundation
import Store

// MARK: - Who leads, and who may act

/// A control process as it stands for the driver's leadership: the value of
/// `driver/leader` while it leads. Hosts send their health to `api`; the CLI's
/// `--etcd` sends its requests there.
public struct ControlListing: Codable, Sendable, Equatable {
    /// The machine it runs on.
    public var machine: String
    /// Its process id.
    public var pid: Int32
    /// Where its control API listens (`HOST:PORT`).
    public var api: String
    /// When it started campaigning.
    public var startedAt: Date

    /// A listing of this process, its API at `api`.
    public init(machine: String, pid: Int32, api: String, startedAt: Date) {
        self.machine = machine
        self.pid = pid
        self.api = api
        self.startedAt = startedAt
    }
}

/// An operator's session: `session/HASH` (the SHA-256 of a bearer token) on a short
/// lease, written by a CLI that holds the fleet's etcd credentials. Whoever may write
/// the fleet's keys is the fleet's operator: a control process takes the token as the
/// admin while the key lives, so `--etcd` needs no admin token file on the operator's
/// machine. A host's etcd identity cannot write it (hosts write only their own key).
public struct OperatorSession: Codable, Sendable, Equatable {
    /// Who opened it (user and machine), for the audit log.
    public var actor: String
    /// When it was opened.
    public var openedAt: Date
}

extension EtcdStore.Keys {
    static let driverLeader = "driver/leader"
    static func session(_ hash: String) -> String { "session/\(hash)" }
    static let sessions = "session/"
}

extension EtcdStore {
    /// The full key the drivers' election races for.
    public var driverLeaderKey: String { key(Keys.driverLeader) }

    /// The value a control process whose API listens at `api` campaigns with: its
    /// ``ControlListing``, as the store writes values.
    public func candidate(api: String) -> String {
        let listing = ControlListing(machine: ProcessInfo.processInfo.hostName, pid: getpid(), api: api, startedAt: now())
        return String(decoding: (try? encode(listing)) ?? [], as: UTF8.self)
    }

    /// The control process leading the driver, or nil when none leads (none runs, or
    /// the last leader's lease ran out and no other took it yet).
    public func leader() async throws -> ControlListing? {
        do {
            guard let kv = try await client.get(key(Keys.driverLeader)).first else { return nil }
            return try decode(ControlListing.self, kv)
        } catch {
            throw translate(error, "read the driver's leader")
        }
    }

    /// The value of `host/NAME` (the host's presence), or nil while the host is not alive.
    public func hostRecord(_ name: String) async throws -> EtcdHostPresence.Record? {
        do {
            guard let kv = try await client.get(key(Keys.host(name))).first else { return nil }
            return try decode(EtcdHostPresence.Record.self, kv)
        } catch {
            throw translate(error, "read host \(name)")
        }
    }

    /// Opens an operator session for `token` that ends after `ttl` seconds at the
    /// latest; returns its lease (``closeSession(lease:)`` ends it sooner).
    public func openSession(token: String, actor: String, ttl: Int64 = 60) async throws -> Int64 {
        do {
            let lease = try await client.grantLease(ttl: ttl)
            let session = OperatorSession(actor: actor, openedAt: now())
            _ = try await client.put(key(Keys.session(TokenHash.of(token: token))), try encode(session), lease: lease.id)
            return lease.id
        } catch {
            throw translate(error, "open an operator session")
        }
    }

    /// Ends a session now (best effort: an unreachable etcd ends it with its lease).
    public func closeSession(lease: Int64) async {
        _ = try? await client.revokeLease(lease)
    }

    /// The open session of a bearer token, or nil.
    public func session(token: String) async throws -> OperatorSession? {
        do {
            guard let kv = try await client.get(key(Keys.session(TokenHash.of(token: token)))).first else { return nil }
            return try decode(OperatorSession.self, kv)
        } catch {
            throw translate(error, "read an operator session")
        }
    }
}

extension EtcdStore: FleetDirectory {
    public func reportTokenHash(host name: String) async throws -> String? {
        try await hostRecord(name)?.reportTokenHash
    }

    public func operatorSessionActor(token: String) async throws -> String? {
        try await session(token: token)?.actor
    }
}
