import Etcd
import Foundation
import Store
import Synchronization

/// A host agent's presence in the fleet: the key `host/NAME` under the store's
/// prefix, held by a lease of the host's own (gone about `ttl` seconds after the host
/// stops renewing it), holding its group, pid and the hash of its report token.
///
/// The key is written once per lease (at start, and again when a lost lease is
/// granted anew), never as the host applies changes: every write to the prefix is a
/// revision every host's watch receives, so a host rewriting its key after each
/// change made one change cost N revisions and about N² watch events across N hosts.
/// Renewing the lease writes no revision. How far a host's replica has come goes to
/// the leader in its health reports (`status --etcd` shows it). A lost lease (etcd
/// away past the TTL) is granted again once etcd answers; errors are retried with
/// backoff and never reach the host.
public final class EtcdHostPresence: Sendable {
    /// The value of `host/NAME`.
    public struct Record: Codable, Sendable, Equatable {
        /// The host's name (`--host`).
        public var name: String
        /// Its group (`--group`).
        public var group: String
        /// The agent's process id.
        public var pid: Int32
        /// When this was written: the agent's start, or its lease granted anew.
        public var updatedAt: Date
        /// The SHA-256 of the token the host sends its health reports with: the
        /// leading control process takes a report for host NAME only with the token
        /// whose hash NAME's own key holds (only the host's etcd identity writes it).
        /// Nil from an agent that sends no reports.
        public var reportTokenHash: String?
    }

    /// The store whose prefix holds the key.
    public let store: EtcdStore
    /// The host's name.
    public let name: String
    /// The host's group.
    public let group: String
    /// The lease's time to live, in seconds.
    public let ttl: Int64
    /// The bearer token of this agent's health reports (made at start, never stored:
    /// its hash is in the key).
    public let reportToken = TokenHash.newToken(prefix: TokenPrefix.hostReport)
    private let state = Mutex(State())

    private struct State {
        var task: Task<Void, Never>?
        var written: Record?
        var problem: String?
    }

    /// A presence for host `name` of `group`.
    /// Throws ``StoreError/Kind/invalid`` for a name that is not a plain name.
    public init(store: EtcdStore, name: String, group: String, ttl: Int64 = 10) throws {
        try StoreArguments.checkName("host", name)
        try StoreArguments.checkName("group", group)
        self.store = store
        self.name = name
        self.group = group
        self.ttl = ttl
    }

    /// The key, in full.
    public var key: String { store.key(EtcdStore.Keys.host(name)) }

    /// What was last written, nil before the first write.
    public var written: Record? { state.withLock { $0.written } }

    /// Why the key could not be written lately, nil once it was.
    public var problem: String? { state.withLock { $0.problem } }

    /// Starts holding the key (once).
    public func start() {
        let task = Task.detached { [self] in await hold() }
        let started = state.withLock { state -> Bool in
            guard state.task == nil else { return false }
            state.task = task
            return true
        }
        if !started { task.cancel() }
    }

    /// Stops renewing and deletes the key (its lease revoked, best effort).
    public func stop() async {
        let task = state.withLock { $0.task }
        task?.cancel()
        await task?.value
    }

    private func hold() async {
        var backoff = Duration.milliseconds(500)
        let client = store.client
        while !Task.isCancelled {
            do {
                let lease = try await client.grantLease(ttl: ttl)
                let keeper = client.keepAlive(lease: lease.id, ttl: lease.ttl)
                let record = Record(
                    name: name, group: group, pid: getpid(), updatedAt: store.now(), reportTokenHash: TokenHash.of(token: reportToken))
                do {
                    _ = try await client.put(key, try store.encode(record), lease: lease.id)
                } catch {
                    keeper.stop()
                    throw error
                }
                state.withLock { state in
                    state.written = record
                    state.problem = nil
                }
                backoff = .milliseconds(500)
                while !Task.isCancelled, keeper.loss == nil {
                    try? await Task.sleep(for: .milliseconds(500))
                }
                keeper.stop()
                if Task.isCancelled {
                    // The key goes with its lease; a lease that cannot be revoked now
                    // ends on its own after its TTL.
                    _ = try? await Task.detached { try await client.revokeLease(lease.id) }.value
                    return
                }
                state.withLock { $0.problem = "the lease of \(key) was lost (\(keeper.loss.map { "\($0)" } ?? "")); granting another" }
            } catch {
                state.withLock { $0.problem = "cannot hold \(key): \(error)" }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }
}
