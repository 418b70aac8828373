/// Everything counted for one target, live (a snapshot) or final.
///
/// Every request is counted exactly once, so these hold at any time:
/// - `attempts == ok + statuses' counts + failures.total + inFlight`
/// - `completed == ok + statuses' counts + failures.mismatch`
///
/// and in a final report, where `inFlight` is 0, also
/// `sent == attempts - failures.connect`.
public struct TargetReport: Sendable, Codable, Equatable {
    /// The target's label, such as the pool name.
    public var label: String
    /// `HOST:PORT` connected to.
    public var address: String
    /// The request method.
    public var method: String
    /// The request path.
    public var path: String
    /// The `Host` header sent.
    public var hostHeader: String
    /// Connections configured for this target.
    public var connections: Int

    /// Requests started, including those that failed to connect.
    public var attempts: Int
    /// Requests whose bytes were (at least partly) written to a connection.
    public var sent: Int
    /// Requests that got a complete, well-formed response, whatever its status.
    public var completed: Int
    /// Requests started but not finished yet (0 once the run has finished).
    public var inFlight: Int
    /// 2xx responses that met the target's expectations.
    public var ok: Int
    /// Complete non-2xx responses, by status, in ascending order.
    public var statuses: [StatusCount]
    /// Requests that ended without a usable response, by kind.
    public var failures: FailureCounts

    /// TCP connections opened successfully.
    public var connectionsOpened: Int
    /// Kept-alive connections that the server closed (or wrote to) while idle
    /// between two requests. No request was on them, so none was lost; the next
    /// request went out on a new connection.
    public var idleClosed: Int

    /// Latency of the completed requests, from the first byte sent to the last
    /// byte received.
    public var latency: LatencySummary
    /// `x-bulkhead-worker` values seen on complete responses, with their counts
    /// (at most 256 distinct values, any more under `"(other)"`).
    public var workers: [String: Int]
    /// `x-bulkhead-pool` values seen on complete responses, with their counts.
    public var pools: [String: Int]

    /// Width of a timeline bucket.
    public var timelineBucketMilliseconds: Int
    /// Outcomes by the time they were recorded, one bucket per
    /// `timelineBucketMilliseconds` from the start of the run, with no gaps.
    public var timeline: [TimelineBucket]
    /// What went wrong, counted by description (`"eof: closed after 23 response
    /// bytes"`, and the idle closes: `"idle: closed by server"`): at most 32
    /// distinct descriptions, any more counted under `"(other)"`.
    public var failureDetails: [String: Int]

    /// Creates a report; the load client fills these in.
    public init(
        label: String, address: String, method: String, path: String, hostHeader: String,
        connections: Int, attempts: Int, sent: Int, completed: Int, inFlight: Int, ok: Int,
        statuses: [StatusCount], failures: FailureCounts, connectionsOpened: Int, idleClosed: Int,
        latency: LatencySummary, workers: [String: Int], pools: [String: Int],
        timelineBucketMilliseconds: Int, timeline: [TimelineBucket], failureDetails: [String: Int]
    ) {
        self.label = label
        self.address = address
        self.method = method
        self.path = path
        self.hostHeader = hostHeader
        self.connections = connections
        self.attempts = attempts
        self.sent = sent
        self.completed = completed
        self.inFlight = inFlight
        self.ok = ok
        self.statuses = statuses
        self.failures = failures
        self.connectionsOpened = connectionsOpened
        self.idleClosed = idleClosed
        self.latency = latency
        self.workers = workers
        self.pools = pools
        self.timelineBucketMilliseconds = timelineBucketMilliseconds
        self.timeline = timeline
        self.failureDetails = failureDetails
    }

    // MARK: - Derived counts

    /// Finished requests that were not ok: every non-2xx status, every failure.
    public var failed: Int { attempts - inFlight - ok }

    /// Complete responses with `status` (any 2xx that failed expectations is a
    /// `mismatch`, not counted here).
    public func count(status: Int) -> Int {
        statuses.first { $0.status == status }?.count ?? 0
    }

    /// Complete responses with `status` and the header `x-bulkhead-error: errorKind`.
    public func count(status: Int, errorKind: String) -> Int {
        statuses.first { $0.status == status }?.errorKinds[errorKind] ?? 0
    }

    /// Requests that failed with `kind`.
    public func count(_ kind: FailureKind) -> Int {
        failures[kind]
    }

    /// Start of the first timeline bucket with a request that was not ok, in
    /// seconds from the start of the run.
    public var firstFailureSeconds: Double? {
        timeline.first { $0.failed > 0 }.map { Double($0.startMilliseconds) / 1000 }
    }

    /// End of the last timeline bucket with a request that was not ok, in seconds
    /// from the start of the run.
    public var lastFailureSeconds: Double? {
        timeline.last { $0.failed > 0 }
            .map { Double($0.startMilliseconds + timelineBucketMilliseconds) / 1000 }
    }

    /// Start of the first bucket after the last failure with an ok request: when
    /// service came back. Nil if nothing failed or nothing was ok afterwards.
    public var recoveredSeconds: Double? {
        guard let last = timeline.lastIndex(where: { $0.failed > 0 }) else { return nil }
        return timeline[(last + 1)...].first { $0.ok > 0 }.map { Double($0.startMilliseconds) / 1000 }
    }
}

/// Complete responses with one non-2xx status.
public struct StatusCount: Sendable, Codable, Equatable {
    /// The HTTP status code.
    public var status: Int
    /// Responses with this status.
    public var count: Int
    /// Those of them that carried `x-bulkhead-error`, by its value; the rest had none.
    public var errorKinds: [String: Int]

    /// Creates a count.
    public init(status: Int, count: Int, errorKinds: [String: Int]) {
        self.status = status
        self.count = count
        self.errorKinds = errorKinds
    }
}

/// Failed requests by kind.
public struct FailureCounts: Sendable, Codable, Equatable {
    /// See `FailureKind.connect`.
    public var connect = 0
    /// See `FailureKind.reset`.
    public var reset = 0
    /// See `FailureKind.eof`.
    public var eof = 0
    /// See `FailureKind.timeout`.
    public var timeout = 0
    /// See `FailureKind.badResponse`.
    public var badResponse = 0
    /// See `FailureKind.mismatch`.
    public var mismatch = 0

    /// No failures.
    public init() {}

    /// All failures together.
    public var total: Int { connect + reset + eof + timeout + badResponse + mismatch }

    /// The count for one kind.
    public subscript(kind: FailureKind) -> Int {
        get {
            switch kind {
            case .connect: connect
            case .reset: reset
            case .eof: eof
            case .timeout: timeout
            case .badResponse: badResponse
            case .mismatch: mismatch
            }
        }
        set {
            switch kind {
            case .connect: connect = newValue
            case .reset: reset = newValue
            case .eof: eof = newValue
            case .timeout: timeout = newValue
            case .badResponse: badResponse = newValue
            case .mismatch: mismatch = newValue
            }
        }
    }

    /// Keys as `FailureKind` spells them, so the JSON reads like the summary.
    private enum CodingKeys: String, CodingKey {
        case connect, reset, eof, timeout
        case badResponse = "bad-response"
        case mismatch
    }
}

/// Latency of the completed requests, in milliseconds (percentiles within 1.6 %).
public struct LatencySummary: Sendable, Codable, Equatable {
    /// Latencies measured.
    public var count: Int
    /// Fastest.
    public var minMilliseconds: Double?
    /// Mean.
    public var meanMilliseconds: Double?
    /// Median.
    public var p50Milliseconds: Double?
    /// 90th percentile.
    public var p90Milliseconds: Double?
    /// 99th percentile.
    public var p99Milliseconds: Double?
    /// Slowest.
    public var maxMilliseconds: Double?

    /// Creates a summary.
    public init(
        count: Int, minMilliseconds: Double?, meanMilliseconds: Double?, p50Milliseconds: Double?,
        p90Milliseconds: Double?, p99Milliseconds: Double?, maxMilliseconds: Double?
    ) {
        self.count = count
        self.minMilliseconds = minMilliseconds
        self.meanMilliseconds = meanMilliseconds
        self.p50Milliseconds = p50Milliseconds
        self.p90Milliseconds = p90Milliseconds
        self.p99Milliseconds = p99Milliseconds
        self.maxMilliseconds = maxMilliseconds
    }
}

/// Outcomes recorded during one slice of the run.
public struct TimelineBucket: Sendable, Codable, Equatable {
    /// Start of the slice, in milliseconds from the start of the run.
    public var startMilliseconds: Int
    /// Requests that ended ok.
    public var ok: Int
    /// Requests that ended any other way (non-2xx or failure).
    public var failed: Int

    /// Creates a bucket.
    public init(startMilliseconds: Int, ok: Int, failed: Int) {
        self.startMilliseconds = startMilliseconds
        self.ok = ok
        self.failed = failed
    }
}
