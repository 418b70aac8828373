/// One connection's counts, kept under that connection's lock and merged per
/// target when a report is taken. Per connection, so the hot path never waits on
/// another connection's lock.
struct ConnectionTally: Sendable {
    /// Ok and failed outcomes recorded in one timeline bucket.
    struct Bucket: Sendable {
        var ok = 0
        var failed = 0
    }

    /// Non-2xx responses with one status.
    struct StatusTally: Sendable {
        var count = 0
        var errorKinds = BoundedCounter(limit: 32)
    }

    var attempts = 0
    var sent = 0
    var completed = 0
    var ok = 0
    var statuses: [Int: StatusTally] = [:]
    var failures = FailureCounts()
    var connectionsOpened = 0
    var idleClosed = 0
    var latency = LatencyHistogram()
    var workers = BoundedCounter(limit: 256)
    var pools = BoundedCounter(limit: 64)
    var details = BoundedCounter(limit: 32)
    var timeline: [Bucket] = []

    /// Requests that have an outcome.
    var finished: Int {
        ok + statuses.values.reduce(0) { $0 + $1.count } + failures.total
    }

    /// Records the outcome of one request in timeline bucket `bucket`.
    mutating func record(_ outcome: Outcome, bucket: Int) {
        if bucket >= timeline.count {
            timeline.append(contentsOf: repeatElement(Bucket(), count: bucket + 1 - timeline.count))
        }
        switch outcome {
        case .ok:
            ok += 1
            completed += 1
            timeline[bucket].ok += 1
        case .status(let status, let errorKind):
            statuses[status, default: StatusTally()].count += 1
            if let errorKind {
                statuses[status, default: StatusTally()].errorKinds.add(errorKind)
            }
            completed += 1
            timeline[bucket].failed += 1
        case .failure(let kind):
            failures[kind] += 1
            if kind == .mismatch { completed += 1 }
            timeline[bucket].failed += 1
        }
    }

    /// Adds `other`'s counts to these.
    mutating func merge(_ other: ConnectionTally) {
        attempts += other.attempts
        sent += other.sent
        completed += other.completed
        ok += other.ok
        for (status, tally) in other.statuses {
            statuses[status, default: StatusTally()].count += tally.count
            statuses[status, default: StatusTally()].errorKinds.merge(tally.errorKinds)
        }
        for kind in FailureKind.allCases { failures[kind] += other.failures[kind] }
        connectionsOpened += other.connectionsOpened
        idleClosed += other.idleClosed
        latency.merge(other.latency)
        workers.merge(other.workers)
        pools.merge(other.pools)
        details.merge(other.details)
        if other.timeline.count > timeline.count {
            timeline.append(contentsOf: repeatElement(Bucket(), count: other.timeline.count - timeline.count))
        }
        for (index, bucket) in other.timeline.enumerated() {
            timeline[index].ok += bucket.ok
            timeline[index].failed += bucket.failed
        }
    }
}

/// Counts by text that a server controls (worker ids, pool names, error kinds),
/// with a cap on distinct keys so a misbehaving server cannot grow it without
/// bound: keys past the cap are counted under `"(other)"`.
struct BoundedCounter: Sendable {
    /// The counts.
    private(set) var counts: [String: Int] = [:]
    /// Distinct keys kept.
    let limit: Int

    /// The key that collects everything past the cap.
    static let overflowKey = "(other)"
    /// Longest key kept; longer ones are cut.
    static let maxKeyLength = 120

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts `key` once.
    mutating func add(_ key: String, count: Int = 1) {
        let key = key.count > Self.maxKeyLength ? String(key.prefix(Self.maxKeyLength)) + "…" : key
        if counts[key] != nil || counts.count < limit {
            counts[key, default: 0] += count
        } else {
            counts[Self.overflowKey, default: 0] += count
        }
    }

    /// Adds `other`'s counts.
    mutating func merge(_ other: BoundedCounter) {
        for (key, count) in other.counts { add(key, count: count) }
    }
}
