import Synchronization

/// Keeps one lease alive: renews it at once, then every third of its TTL, from a task of its own,
/// until `stop()` or until the lease is lost. Lost means etcd said the lease is gone
/// (it expired while no renewal got through, or was revoked), or no renewal got
/// through for a whole TTL (the lease has then expired, or is about to, as far as
/// anyone can tell from here). `lost()` waits for either.
///
/// Stopping does not revoke the lease: its keys stay until the TTL runs out (call
/// `EtcdClient.revokeLease` to drop them at once).
public final class EtcdLeaseKeeper: Sendable {
    /// Why a lease was lost.
    public enum Loss: Sendable, Equatable, CustomStringConvertible {
        /// etcd answered that the lease no longer exists.
        case expired
        /// No renewal reached etcd for a whole TTL; the last error.
        case unreachable(EtcdError)

        public var description: String {
            switch self {
            case .expired: return "the lease expired or was revoked"
            case .unreachable(let error): return "no renewal reached etcd for a whole TTL (\(error))"
            }
        }
    }

    /// The lease kept.
    public let leaseID: Int64
    /// Its TTL, in seconds.
    public let ttl: Int64
    private let shared: Shared
    private let task: Task<Loss?, Never>

    private struct State {
        var renewals = 0
        var lastTTL: Int64 = 0
        var loss: Loss?
    }

    /// What the keeper and its task share (the task must not hold the keeper, so
    /// that dropping the keeper stops it).
    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    init(client: EtcdClient, leaseID: Int64, ttl: Int64) {
        self.leaseID = leaseID
        self.ttl = ttl
        let shared = Shared()
        self.shared = shared
        let keeper = KeeperLoop(client: client, leaseID: leaseID, ttl: ttl)
        self.task = Task {
            let loss = await keeper.run { answer in
                shared.state.withLock { state in
                    state.renewals += 1
                    state.lastTTL = answer
                }
            }
            if let loss { shared.state.withLock { $0.loss = loss } }
            return loss
        }
    }

    deinit {
        task.cancel()
    }

    /// Stops renewing. `lost()` then returns nil (unless the lease was lost before).
    public func stop() {
        task.cancel()
    }

    /// Waits until the lease is lost and says why; nil once `stop()` was called.
    public func lost() async -> Loss? {
        await task.value
    }

    /// Why the lease was lost, nil while it is kept (or after `stop()`).
    public var loss: Loss? { shared.state.withLock { $0.loss } }

    /// How many renewals went through, and the TTL the last one answered.
    public var renewals: (count: Int, lastTTL: Int64) { shared.state.withLock { ($0.renewals, $0.lastTTL) } }
}

/// The renewal loop, apart from the keeper's state.
private struct KeeperLoop: Sendable {
    let client: EtcdClient
    let leaseID: Int64
    let ttl: Int64

    func run(renewed: @Sendable (Int64) -> Void) async -> EtcdLeaseKeeper.Loss? {
        let clock = ContinuousClock()
        let interval = Duration.milliseconds(max(ttl * 1000 / 3, 100))
        var lastRenewal = clock.now
        // The first renewal goes out at once, as etcd's own client does: the lease
        // may have been granted a while ago on a busy machine.
        var wait = Duration.zero
        while true {
            do {
                try await Task.sleep(for: wait)
            } catch {
                return nil
            }
            do {
                let answer = try await client.keepAliveOnce(leaseID)
                guard answer.ttl > 0 else { return .expired }
                lastRenewal = clock.now
                wait = interval
                renewed(answer.ttl)
            } catch .leaseNotFound {
                return .expired
            } catch .cancelled {
                return nil
            } catch {
                if Task.isCancelled { return nil }
                if clock.now - lastRenewal >= .seconds(ttl) { return .unreachable(error) }
                // Try again soon: the lease has less than a TTL left.
                wait = min(interval, .milliseconds(500))
            }
        }
    }
}
