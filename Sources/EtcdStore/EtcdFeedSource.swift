import BulkheadCore
import Etcd
import Foundation
import Store
import Synchronization

/// Settings of an ``EtcdFeedSource``.
public struct EtcdFeedConfiguration: Sendable {
    /// How often the source reads one key of the prefix linearizably (from the
    /// leader's view), to notice a watch that went silent on a member cut off from
    /// the cluster.
    public var checkInterval: Duration = .seconds(2)
    /// How long the store may stay ahead of what the watch delivered before the
    /// watch is taken for stuck and started again (possibly on another member).
    public var stuckAfter: Duration = .seconds(4)
    /// The first pause before a watch that ended (no leader, member gone) is started
    /// again; doubled up to ``maximumBackoff``.
    public var initialBackoff: Duration = .milliseconds(100)
    /// The longest pause between two tries to watch again.
    public var maximumBackoff: Duration = .seconds(5)

    /// Settings; the defaults suit a loaded machine.
    public init(
        checkInterval: Duration = .seconds(2), stuckAfter: Duration = .seconds(4), initialBackoff: Duration = .milliseconds(100),
        maximumBackoff: Duration = .seconds(5)
    ) {
        self.checkInterval = checkInterval
        self.stuckAfter = stuckAfter
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
    }
}

/// The change feed of an ``EtcdStore``, as a host agent follows it: a watch on the
/// store's prefix (require-leader), run by a task of its own from the revision
/// after the one the replica applied.
///
/// - The watch records, under a lock, the changes it sees (``StoreChange``s decoded
///   from the keys; blobs, tokens and the audit log carry nothing for a host) and
///   the newest revision it delivered. ``changeToken()`` answers from that memory
///   and never touches the network, so the supervisor's tick never waits on etcd.
/// - ``update(after:limit:)`` reads the rows the changes name at the one revision
///   the watch delivered them up to (pinned reads), and builds the ``ReplicaUpdate``
///   that ``ChangeFeedReader`` builds for the same contents. With no revision, after
///   etcd compacted past the watch, or when etcd's history is behind what the source
///   saw (another cluster, lost data), it makes a full copy at one revision, paged,
///   and the watch goes on from that revision + 1.
/// - A watch that ends (no leader, member gone) is started again with backoff;
///   meanwhile the token stays put and the host serves its replica (fail static).
///   ``health`` says since when the source is cut off.
/// - Every ``EtcdFeedConfiguration/checkInterval`` a linearizable read of
///   `audit/next` (every write of the store changes it) tells where the store is: a
///   watch that stays behind it for ``EtcdFeedConfiguration/stuckAfter`` is started
///   again, on whichever member answers.
///
/// Call ``close()`` when done: the watch and the check run until then. The calls of
/// the protocol come from one owner (the supervisor's queue), never from a
/// Swift-concurrency thread (``update(after:limit:)`` blocks its caller, as
/// ``EtcdStore`` does).
public final class EtcdFeedSource: RemoteChangeFeedSource {
    /// Where the source stands, for `status`.
    public struct Health: Sendable, Equatable {
        /// Since when the source has been cut off from etcd (a watch that ended and
        /// is not back, a linearizable read that failed, a watch found stuck); nil
        /// while it follows.
        public var cutOffSince: Date?
        /// The revision of the last update handed to the host (which applies it at
        /// once), nil before one.
        public var appliedRevision: Int?
        /// The newest revision of a change that carries something for the host (not
        /// a blob, an audit event or a host's own key) that the replica had applied at
        /// the last update: what a host reports, so that writing its report (a change
        /// of its own key, which every host sees) does not call for another report.
        public var appliedChangeRevision: Int?
        /// The newest revision the watch delivered (or a full copy read).
        public var watchedRevision: Int
        /// The member the last watch was created on (the client's endpoint then).
        public var watchEndpoint: String?
        /// Watches created (the first, and each one after a restart).
        public var watchesCreated: Int
        /// Watches started again because they stayed behind the store.
        public var stuckRestarts: Int
        /// Full copies read.
        public var fullCopies: Int
        /// The last problem, for people; nil once following again.
        public var problem: String?
    }

    /// The store followed.
    public let store: EtcdStore
    /// Settings.
    public let configuration: EtcdFeedConfiguration
    private let state = Mutex(State())

    private struct State {
        /// Whether the watch and the check were started (at the first update).
        var started = false
        var closed = false
        /// The source holds every change in `(base, delivered]`.
        var base = 0
        var delivered = 0
        /// Changes after `base`, in revision order.
        var entries: [FeedEntry] = []
        /// etcd cannot bring the source up to date (compacted past it, or behind it).
        var needsFullCopy = false
        /// Moves whenever the source learns something (see `changeToken()`).
        var token = 0
        var followTask: Task<Void, Never>?
        var checkTask: Task<Void, Never>?
        /// The task reading the current watch, cancelled to start it again.
        var watchTask: Task<WatchEnd, Never>?
        /// Since when the store has been ahead of the watch.
        var aheadSince: ContinuousClock.Instant?
        /// Whether a watch is open (created, not ended).
        var watching = false
        var cutOffSince: Date?
        var applied: Int?
        var appliedChange: Int?
        /// When a full copy last failed, and how: the next one waits a little, so a
        /// host with no replica does not block its queue on an unreachable etcd on
        /// every tick.
        var fullCopyFailure: (at: ContinuousClock.Instant, error: StoreError)?
        var watchEndpoint: String?
        var watchesCreated = 0
        var stuckRestarts = 0
        var fullCopies = 0
        var problem: String?
    }

    /// How one watch ended.
    enum WatchEnd: Sendable {
        /// Cancelled (found stuck, or closing): watch again at once.
        case stopped
        /// etcd compacted past its start.
        case compacted
        /// It failed (no leader, every member gone, …); `created` when it had started.
        case failed(String, created: Bool)
    }

    /// A source following `store`. Nothing is read or watched until the first
    /// ``update(after:limit:)``, which says from which revision.
    public init(store: EtcdStore, configuration: EtcdFeedConfiguration = .init()) {
        self.store = store
        self.configuration = configuration
    }

    // MARK: - ChangeFeedSource

    /// The store's location (`etcd URLS under PREFIX`).
    public var location: String { store.location }

    /// Always true: a cluster is not replaced under a source (a reset one is noticed
    /// by its revision and copied whole).
    public var isCurrent: Bool { true }

    /// A number that moves whenever the watch delivered a revision or the source
    /// needs a full copy; read from memory, never from etcd.
    public func changeToken() throws -> Int {
        state.withLock { $0.token }
    }

    /// Since when the source has been cut off from etcd; nil while it follows.
    public var cutOffSince: Date? {
        state.withLock { $0.cutOffSince }
    }

    /// Why the source is cut off, while it is.
    public var sourceProblem: String? {
        state.withLock { $0.cutOffSince == nil ? nil : $0.problem }
    }

    /// Where the source stands.
    public var health: Health {
        state.withLock { state in
            Health(
                cutOffSince: state.cutOffSince, appliedRevision: state.applied, appliedChangeRevision: state.appliedChange,
                watchedRevision: state.delivered, watchEndpoint: state.watchEndpoint,
                watchesCreated: state.watchesCreated, stuckRestarts: state.stuckRestarts, fullCopies: state.fullCopies,
                problem: state.problem)
        }
    }

    /// The changes the watch delivered after `revision` (at most about `limit`:
    /// a revision is never split) and the rows they name, read at one revision; or a
    /// full copy (see the type's notes). Blocks the caller on etcd, within the
    /// client's timeouts; fails with a ``StoreError`` (unreachable when etcd does not
    /// answer), and nothing is lost: the next call asks again.
    public func update(after revision: Int?, limit: Int = 10_000) throws -> FeedRead {
        let read = try read(after: revision, limit: limit)
        state.withLock { state in
            state.applied = read.update.revision
            // Only changes that carry something move it (see `Health`): an update made
            // of hosts' own reports does not.
            if let changed = read.update.isFullCopy ? read.update.revision : read.entries.last?.revision {
                state.appliedChange = max(state.appliedChange ?? 0, changed)
            } else if state.appliedChange == nil {
                state.appliedChange = revision
            }
        }
        return read
    }

    private func read(after revision: Int?, limit: Int) throws -> FeedRead {
        guard (1...10_000).contains(limit) else {
            throw StoreError.invalidArgument("a change-feed batch is 1 to 10000 changes, got \(limit)")
        }
        let plan = state.withLock { state in Self.plan(&state, after: revision, limit: limit) }
        switch plan {
        case .fullCopy:
            return try fullCopy()
        case .start(let revision):
            startFollowing()
            return FeedRead(
                bounds: FeedBounds(latest: revision, oldest: nil), entries: [],
                update: ReplicaUpdate(revision: revision, isFullCopy: false), scriptsRead: 0)
        case .changes(let entries, let through, let latest, let oldest):
            let bounds = FeedBounds(latest: latest, oldest: oldest)
            guard !entries.isEmpty else {
                return FeedRead(
                    bounds: bounds, entries: [], update: ReplicaUpdate(revision: through, isFullCopy: false), scriptsRead: 0)
            }
            let changes = entries.map(\.change)
            let outcome = EtcdStore.blocking { [self] in try await readChanges(changes, at: through) }
            switch outcome {
            case .success(let (update, scriptsRead)):
                return FeedRead(bounds: bounds, entries: entries, update: update, scriptsRead: scriptsRead)
            case .failure(EtcdError.compacted):
                // Compacted between the watch and this read: the rows at that revision
                // are gone, so copy everything as it is now.
                return try fullCopy()
            case .failure(let error):
                throw store.translate(error, "read the changes after revision \(revision ?? 0)")
            }
        }
    }

    /// Stops the watch and the check.
    public func close() {
        let tasks = state.withLock { state in
            state.closed = true
            return [state.followTask, state.checkTask].compactMap { $0 } as [Task<Void, Never>]
        }
        let watch = state.withLock { $0.watchTask }
        for task in tasks { task.cancel() }
        watch?.cancel()
    }

    // MARK: - Planning an update

    private enum Plan {
        case fullCopy
        case start(Int)
        case changes([FeedEntry], through: Int, latest: Int, oldest: Int)
    }

    private static func plan(_ state: inout State, after revision: Int?, limit: Int) -> Plan {
        if let revision { state.entries.removeAll { $0.revision <= revision } }
        guard let revision, !state.needsFullCopy else { return .fullCopy }
        guard state.started else {
            state.started = true
            state.base = revision
            state.delivered = revision
            return .start(revision)
        }
        // The replica is older than what the source holds (it was written by another
        // source, or an update failed after a full copy): the changes between are gone.
        guard revision >= state.base else { return .fullCopy }
        guard revision < state.delivered else {
            return .changes([], through: revision, latest: revision, oldest: state.base + 1)
        }
        var taken: [FeedEntry] = []
        var through = state.delivered
        for entry in state.entries where entry.revision > revision {
            if taken.count >= limit, let last = taken.last, entry.revision != last.revision {
                through = last.revision
                break
            }
            taken.append(entry)
        }
        return .changes(taken, through: through, latest: state.delivered, oldest: state.base + 1)
    }

    // MARK: - Full copy

    private func fullCopy() throws -> FeedRead {
        let retry = configuration.initialBackoff * 20
        if let failure = state.withLock({ $0.fullCopyFailure }), ContinuousClock.now - failure.at < retry {
            throw failure.error
        }
        let outcome = EtcdStore.blocking { [self] in try await readFullCopy() }
        let (update, scriptsRead): (ReplicaUpdate, Int)
        do {
            (update, scriptsRead) = try outcome.get()
        } catch {
            let failure = store.translate(error, "copy the control store whole")
            state.withLock { state in
                state.fullCopyFailure = (ContinuousClock.now, failure)
                if failure.kind == .unreachable, state.cutOffSince == nil { state.cutOffSince = Date() }
            }
            throw failure
        }
        let start = state.withLock { state -> Bool in
            state.fullCopyFailure = nil
            state.needsFullCopy = false
            state.fullCopies += 1
            state.base = update.revision
            state.delivered = max(state.delivered, update.revision)
            state.entries.removeAll { $0.revision <= update.revision }
            defer { state.started = true }
            return !state.started
        }
        if start { startFollowing() }
        return FeedRead(
            bounds: FeedBounds(latest: update.revision, oldest: nil), entries: [], update: update, scriptsRead: scriptsRead)
    }

    // MARK: - The watch

    private func startFollowing() {
        let following = Task.detached { [self] in await follow() }
        let checking = Task.detached { [self] in await check() }
        let closed = state.withLock { state in
            state.followTask = following
            state.checkTask = checking
            return state.closed
        }
        if closed {
            following.cancel()
            checking.cancel()
        }
    }

    /// Watches from the revision after the one delivered, again and again, until closed.
    private func follow() async {
        var backoff = configuration.initialBackoff
        while true {
            let next = state.withLock { state -> Int? in
                if state.closed { return nil }
                return state.needsFullCopy ? 0 : max(state.base, state.delivered) + 1
            }
            guard let next else { return }
            if next == 0 {
                // A full copy is due: the next update makes it and says where to go on.
                try? await Task.sleep(for: .milliseconds(20))
                continue
            }
            let watch = Task { [self] in await readWatch(from: next) }
            let closed = state.withLock { state in
                state.watchTask = watch
                return state.closed
            }
            if closed { watch.cancel() }
            let end = await watch.value
            state.withLock { state in
                state.watchTask = nil
                state.watching = false
            }
            switch end {
            case .stopped:
                backoff = configuration.initialBackoff
            case .compacted:
                state.withLock { state in
                    state.needsFullCopy = true
                    state.token += 1
                    state.problem = "etcd compacted its history past revision \(next); the next update copies the store whole"
                }
            case .failed(let reason, let created):
                if created { backoff = configuration.initialBackoff }
                state.withLock { state in
                    if state.cutOffSince == nil { state.cutOffSince = Date() }
                    state.problem = "the watch on etcd ended: \(reason); serving the replica, watching again"
                }
                let jitter = Duration.milliseconds(Int.random(in: 0...max(1, Int(EtcdStore.seconds(backoff) * 250))))
                try? await Task.sleep(for: backoff + jitter)
                backoff = min(backoff * 2, configuration.maximumBackoff)
            }
        }
    }

    /// Reads one watch until it ends.
    private func readWatch(from start: Int) async -> WatchEnd {
        let stream = store.client.watch(
            store.prefix, prefix: true, startRevision: Int64(start), progressNotify: true, prevKV: false, requireLeader: true)
        var created = false
        do {
            for try await response in stream {
                if response.created { created = true }
                record(response)
            }
            return .stopped
        } catch EtcdError.compacted {
            return .compacted
        } catch {
            return .failed("\(error)", created: created)
        }
    }

    /// Records what one answer of the watch says.
    private func record(_ response: WatchResponse) {
        let prefix = store.prefix
        let at = Date()
        // The client sticks to the member that took the watch, just before this answer.
        let endpoint = response.created ? store.client.currentEndpoint.absoluteString : nil
        state.withLock { state in
            if response.created {
                state.watchEndpoint = endpoint
                state.watchesCreated += 1
                state.watching = true
                state.cutOffSince = nil
                state.problem = nil
                state.aheadSince = nil
            }
            let before = max(state.base, state.delivered)
            var newest = state.delivered
            for event in response.events {
                let revision = Int(event.kv.modRevision)
                // A watch started again from `delivered + 1` sends nothing twice; a
                // full copy made meanwhile covers what it read.
                guard revision > before else { continue }
                newest = max(newest, revision)
                if let change = Self.change(of: event, prefix: prefix) {
                    state.entries.append(FeedEntry(revision: revision, change: change, at: at))
                }
            }
            if response.isProgressNotification { newest = max(newest, Int(response.header.revision)) }
            if newest > state.delivered {
                state.delivered = newest
                state.token += 1
            }
        }
    }

    /// The change a watched key names, or nil for keys that carry nothing for a host
    /// (blobs: read through the versions that name them; tokens; the audit log;
    /// artifact versions: read when a rollout or an active version names them).
    static func change(of event: WatchEvent, prefix: String) -> StoreChange? {
        let key = event.kv.keyString
        guard key.hasPrefix(prefix) else { return nil }
        let relative = key.dropFirst(prefix.count)
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let first = parts.first else { return nil }
        switch first {
        case "customer" where parts.count == 2:
            return .customer(parts[1])
        case "script" where parts.count == 3, "scriptversion" where parts.count == 4:
            return .script(customer: parts[1], name: parts[2])
        case "setting" where parts.count >= 2:
            return StoreChange.ofSetting(String(relative.dropFirst("setting/".count)))
        case "rollout" where parts.count == 3:
            switch parts[1] {
            case "r", "state":
                return Int(parts[2]).map { .rollout($0) }
            case "running":
                // Written with `rollout/r/ID` in one transaction; its put names the id,
                // its delete (the rollout finished) comes with the record's update.
                guard event.kind == .put,
                    let running = try? JSONDecoder().decode(EtcdStore.RunningRecord.self, from: Data(event.kv.value))
                else { return nil }
                return .rollout(running.id)
            default:
                return nil
            }
        default:
            return nil
        }
    }

    // MARK: - The linearizable check

    /// Every `checkInterval`: where the store is, read from the leader's view, against
    /// what the watch delivered.
    private func check() async {
        let key = store.key(EtcdStore.Keys.auditNext)
        while true {
            try? await Task.sleep(for: configuration.checkInterval)
            if state.withLock({ $0.closed }) { return }
            let answer: RangeResponse
            // What the watch had delivered when the read was sent: the watch may deliver
            // more while the answer is on its way, which says nothing of etcd being behind.
            let deliveredBefore = state.withLock { $0.delivered }
            do {
                answer = try await store.client.get(key)
            } catch {
                state.withLock { state in
                    if state.cutOffSince == nil { state.cutOffSince = Date() }
                    state.problem = "etcd does not answer a linearizable read: \(error); serving the replica"
                }
                continue
            }
            // Every write of the store changes `audit/next`, in the same transaction.
            let written = Int(answer.first?.modRevision ?? 0)
            let clusterRevision = Int(answer.header.revision)
            let now = ContinuousClock.now
            let stuck = state.withLock { state -> Task<WatchEnd, Never>? in
                guard !state.needsFullCopy else { return nil }
                if clusterRevision < deliveredBefore {
                    // etcd is behind what this source saw: its data was lost or it is
                    // another cluster. Nothing it sends continues the replica.
                    state.needsFullCopy = true
                    state.token += 1
                    state.problem = "etcd's revision \(clusterRevision) is behind the \(state.delivered) already seen; copying the store whole"
                    return state.watchTask
                }
                guard written > state.delivered else {
                    state.aheadSince = nil
                    // etcd answers and the open watch has everything it wrote: a cut
                    // that left the watch's connection standing (a link down, then
                    // up) is over.
                    if state.watching, state.cutOffSince != nil {
                        state.cutOffSince = nil
                        state.problem = nil
                    }
                    return nil
                }
                guard let since = state.aheadSince else {
                    state.aheadSince = now
                    return nil
                }
                guard now - since >= configuration.stuckAfter else { return nil }
                state.aheadSince = nil
                state.stuckRestarts += 1
                if state.cutOffSince == nil { state.cutOffSince = Date() }
                state.problem = "the watch delivered revision \(state.delivered) while etcd is at \(written); watching again"
                return state.watchTask
            }
            stuck?.cancel()
        }
    }
}
