import BulkheadCore

/// Everything a pool has served since this supervisor started, summed over its
/// workers from the deltas of their heartbeats, so it only grows: a worker that
/// dies takes none of its counts with it.
public struct PoolTotals: Sendable, Equatable {
    /// Requests answered.
    public var requests = 0
    /// Responses by status code.
    public var statuses: [String: Int] = [:]
    /// Failures by error kind.
    public var errors: [String: Int] = [:]
    /// Platform errors.
    public var platformErrors = 0
    /// Latency of every answer.
    public var latency = LatencyHistogram()
    /// Worker restarts.
    public var restarts = 0
    /// Per script (`customer/name`): requests and failures by kind.
    public var scripts: [String: ScriptCounters] = [:]

    /// Adds what a worker served between two heartbeats.
    mutating func add(from previous: WorkerStats, to current: WorkerStats) {
        // A counter that went down means a new worker behind the same handle:
        // count its stats from zero.
        let base = current.requests >= previous.requests ? previous : WorkerStats()
        requests += current.requests - base.requests
        for (status, count) in current.statuses { statuses[status, default: 0] += max(0, count - (base.statuses[status] ?? 0)) }
        for (kind, count) in current.errors { errors[kind, default: 0] += max(0, count - (base.errors[kind] ?? 0)) }
        platformErrors += max(0, current.platformErrors - base.platformErrors)
        latency.add(current.latency.since(base.latency))
        for (key, counters) in current.scriptCounters {
            let earlier = base.scriptCounters[key] ?? ScriptCounters()
            let start = counters.requests >= earlier.requests ? earlier : ScriptCounters()
            var total = scripts[key] ?? ScriptCounters()
            total.requests += counters.requests - start.requests
            for (kind, count) in counters.errors { total.errors[kind, default: 0] += max(0, count - (start.errors[kind] ?? 0)) }
            scripts[key] = total
        }
    }
}

/// What `/metrics` renders.
public struct MetricsSnapshot: Sendable {
    /// Per pool: totals, workers up and desired, degraded.
    public var pools: [(name: String, totals: PoolTotals, workersUp: Int, workersDesired: Int, degraded: Bool)]
    /// Whether rollouts are frozen (break glass); nil when the store could not say.
    public var frozen: Bool?
    /// The pinned version per artifact kind (break glass); a kind is absent when not pinned.
    public var pins: [String: Int] = [:]
}
