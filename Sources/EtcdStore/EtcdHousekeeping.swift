import Dispatch
import Foundation
import Synchronization

/// The fleet store's upkeep, run by the leading control process on a schedule: etcd's
/// history compacted down to the newest `keepRevisions` revisions (a host further
/// behind than that copies the store whole when it comes back), then contents no
/// version refers to removed.
///
/// `start` and `stop` are called once each, by the owner; the rounds run on a queue
/// of their own.
public final class EtcdHousekeeping: @unchecked Sendable {
    /// What one round did.
    public struct Round: Sendable, Equatable {
        /// The revision etcd's history was compacted to, nil when there was nothing to compact.
        public var compactedTo: Int64?
        /// What the garbage collection removed and kept.
        public var garbage: EtcdGarbageReport
    }

    private let store: EtcdStore
    private let keepRevisions: Int64
    private let leads: @Sendable () -> Bool
    private let report: @Sendable (Result<Round, any Error>) -> Void
    private let queue = DispatchQueue(label: "bulkhead.etcd.housekeeping")
    private let timer: DispatchSourceTimer
    /// Whether the timer was resumed: a dispatch source must not be freed suspended.
    private let started = Mutex(false)

    /// Upkeep of `store` every `interval` seconds while `leads()` says so; each round's
    /// outcome goes to `report`.
    public init(
        store: EtcdStore, keepRevisions: Int64, leads: @escaping @Sendable () -> Bool,
        report: @escaping @Sendable (Result<Round, any Error>) -> Void
    ) {
        self.store = store
        self.keepRevisions = keepRevisions
        self.leads = leads
        self.report = report
        timer = DispatchSource.makeTimerSource(queue: queue)
    }

    /// Starts the schedule: the first round after one `interval`.
    public func start(interval: Double) {
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self] in
            guard let self, leads() else { return }
            report(Result { try self.runRound() })
        }
        timer.resume()
        started.withLock { $0 = true }
    }

    deinit {
        timer.cancel()
        if !started.withLock({ $0 }) { timer.resume() }
    }

    /// Stops the schedule (a round in progress finishes).
    public func stop() {
        timer.cancel()
    }

    /// One round now, on the calling thread (not a Swift-concurrency one: the store blocks).
    public func runRound() throws -> Round {
        let compacted = try store.compact(keepingRevisions: keepRevisions)
        return Round(compactedTo: compacted, garbage: try store.collectGarbage())
    }
}
