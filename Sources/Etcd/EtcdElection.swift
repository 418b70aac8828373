import Synchronization

/// One leader among any number of candidates, on one key held by a lease: the
/// candidate whose transaction created the key leads until its lease is lost. While
/// it leads, `fence` is a comparison its writes carry (the key still has the create
/// revision it had when this candidate won): a leader that was paused past its
/// lease, and another candidate won meanwhile, has every fenced write refused even
/// before it notices.
///
/// Candidates look at the key once per `retryInterval` while they follow, and a new
/// lease replaces a lost one; `stop()` resigns (revokes the lease, so the key goes at
/// once rather than after its TTL).
public final class EtcdElection: Sendable {
    /// Where a candidate stands.
    public enum Standing: Sendable, Equatable, CustomStringConvertible {
        /// Not known yet (the first campaign has not answered), or etcd cannot be
        /// reached; the last error.
        case unknown(String)
        /// This candidate leads since the key's `revision` (its create revision).
        case leading(revision: Int64)
        /// Another candidate leads: its value of the key.
        case following(leader: String)

        public var description: String {
            switch self {
            case .unknown(let why): "unknown (\(why))"
            case .leading(let revision): "leading since revision \(revision)"
            case .following(let leader): "following \(leader)"
            }
        }
    }

    /// The key the candidates race for.
    public let key: String
    /// This candidate's value of the key (who it is, for the others).
    public var candidate: String { state.withLock { $0.candidate } }
    private let client: EtcdClient
    private let ttl: Int64
    private let retryInterval: Duration
    private let state: Mutex<State>

    private struct State {
        var candidate: String
        var standing = Standing.unknown("not started")
        var lease: Int64?
        var task: Task<Void, Never>?
        var changes = 0
    }

    /// A candidate `candidate` for `key`, with leases of `ttl` seconds; nothing
    /// happens before `start()`.
    public init(client: EtcdClient, key: String, candidate: String, ttl: Int64 = 5, retryInterval: Duration = .seconds(1)) {
        self.client = client
        self.key = key
        state = Mutex(State(candidate: candidate))
        self.ttl = ttl
        self.retryInterval = retryInterval
    }

    deinit {
        state.withLock { $0.task?.cancel() }
    }

    /// Where this candidate stands now.
    public var standing: Standing { state.withLock { $0.standing } }

    /// Whether this candidate leads now (as far as it knows: see `fence`).
    public var isLeading: Bool {
        if case .leading = standing { return true }
        return false
    }

    /// The comparison a leader's writes carry: the key was created by this
    /// candidate's winning transaction. When it does not lead, a comparison that no
    /// key meets, so that a fenced write fails whatever happens.
    public var fence: Compare {
        if case .leading(let revision) = standing { return .createRevision(key, .equal, revision) }
        return .createRevision(key, .equal, -1)
    }

    /// How many times the standing changed (tests wait on it).
    public var changes: Int { state.withLock { $0.changes } }

    /// Starts campaigning, in a task of its own, until `stop()`; `candidate`, when
    /// given, replaces the value given at creation (a process that learns who it is
    /// only once it runs, as a control process learns its API's port).
    public func start(as candidate: String? = nil) {
        state.withLock { state in
            guard state.task == nil else { return }
            if let candidate { state.candidate = candidate }
            state.task = Task { [self] in await campaign() }
        }
    }

    /// Stops campaigning and resigns: the lease is revoked, so the key goes now and
    /// another candidate can win at its next look.
    public func stop() async {
        let (task, lease) = state.withLock { state in
            defer { state.task = nil }
            return (state.task, state.lease)
        }
        task?.cancel()
        await task?.value
        if let lease { _ = try? await client.revokeLease(lease) }
        set(.unknown("stopped"), lease: nil)
    }

    private func set(_ standing: Standing, lease: Int64?) {
        state.withLock { state in
            if state.standing != standing { state.changes += 1 }
            state.standing = standing
            state.lease = lease
        }
    }

    private func campaign() async {
        while !Task.isCancelled {
            let lease: LeaseGrant
            do {
                lease = try await client.grantLease(ttl: ttl)
            } catch {
                set(.unknown("\(error)"), lease: nil)
                try? await Task.sleep(for: retryInterval)
                continue
            }
            let keeper = client.keepAlive(lease: lease.id, ttl: lease.ttl)
            await holdOrWait(lease: lease.id, keeper: keeper)
            keeper.stop()
        }
    }

    /// With `lease` kept alive: takes the key when it is free and leads until the
    /// lease is lost; otherwise follows, looking again every `retryInterval`.
    private func holdOrWait(lease: Int64, keeper: EtcdLeaseKeeper) async {
        while !Task.isCancelled {
            if let loss = keeper.loss {
                set(.unknown("\(loss)"), lease: nil)
                return
            }
            do {
                let answer = try await client.txn(
                    compare: [.createRevision(key, .equal, 0)],
                    success: [.put(key, self.candidate, lease: lease)],
                    failure: [.get(key)])
                if answer.succeeded {
                    set(.leading(revision: answer.header.revision), lease: lease)
                    await lead(keeper)
                    return
                }
                let holder = answer.responses.first?.range?.kvs.first
                if holder?.lease == lease {
                    // Our own key, from a transaction whose answer was lost: we lead.
                    set(.leading(revision: holder?.createRevision ?? 0), lease: lease)
                    await lead(keeper)
                    return
                }
                set(.following(leader: holder.map { String(decoding: $0.value, as: UTF8.self) } ?? "?"), lease: lease)
            } catch {
                set(.unknown("\(error)"), lease: lease)
            }
            try? await Task.sleep(for: retryInterval)
        }
    }

    /// Leads until the lease is lost, or until the campaign is stopped (the keeper's
    /// task is its own, so a stop must end it: waiting for a loss would never end).
    private func lead(_ keeper: EtcdLeaseKeeper) async {
        let loss = await withTaskCancellationHandler {
            await keeper.lost()
        } onCancel: {
            keeper.stop()
        }
        set(.unknown(loss.map { "\($0)" } ?? "stopped"), lease: nil)
    }
}
