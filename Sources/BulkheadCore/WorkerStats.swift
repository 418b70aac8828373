/// The versions of the platform artifacts a worker runs.
public struct ArtifactVersions: Codable, Sendable, Equatable, Hashable {
    /// Runtime artifact version (0: the runtime built into this binary).
    public var runtime: Int
    /// Rules artifact version (0: no rules).
    public var rules: Int
    /// Worker binary version (0: the binary the supervisor was started with).
    public var binary: Int
    /// Cohort policy version (0: the host's cohort file). Absent from the heartbeats
    /// of workers built before policies, which run 0.
    public var policy: Int

    /// Creates versions.
    public init(runtime: Int = 0, rules: Int = 0, binary: Int = 0, policy: Int = 0) {
        self.runtime = runtime
        self.rules = rules
        self.binary = binary
        self.policy = policy
    }

    /// The version of `kind`.
    public subscript(kind: ArtifactKind) -> Int {
        get {
            switch kind {
            case .runtime: runtime
            case .rules: rules
            case .binary: binary
            case .policy: policy
            }
        }
        set {
            switch kind {
            case .runtime: runtime = newValue
            case .rules: rules = newValue
            case .binary: binary = newValue
            case .policy: policy = newValue
            }
        }
    }

    private enum CodingKeys: String, CodingKey {
        case runtime, rules, binary, policy
    }

    /// Decodes versions; a peer built before policies sends none (version 0).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        runtime = try container.decode(Int.self, forKey: .runtime)
        rules = try container.decode(Int.self, forKey: .rules)
        binary = try container.decode(Int.self, forKey: .binary)
        policy = try container.decodeIfPresent(Int.self, forKey: .policy) ?? 0
    }
}

/// A worker's cumulative counters, sent in every heartbeat.
///
/// Counters only grow for the life of the worker, so a lost heartbeat loses
/// nothing and a new supervisor can start counting from whatever it first sees.
public struct WorkerStats: Codable, Sendable, Equatable {
    /// Requests answered (any status).
    public var requests: Int = 0
    /// Responses by status code, as text (`"200"`).
    public var statuses: [String: Int] = [:]
    /// Failed requests by error kind (`RequestErrorKind` raw values).
    public var errors: [String: Int] = [:]
    /// Platform errors: throws or limits inside the runtime or a rule, artifacts
    /// that failed to load.
    public var platformErrors: Int = 0
    /// Error signatures of customer scripts with counts, bounded in number.
    public var signatures: [String: Int] = [:]
    /// Error signatures of the platform (runtime, rules, artifacts) with counts: what
    /// a rollout's health gate compares against its baseline.
    public var platformSignatures: [String: Int] = [:]
    /// Latency of every answered request.
    public var latency = LatencyHistogram()
    /// The artifacts the worker runs.
    public var versions = ArtifactVersions()
    /// Scripts loaded.
    public var scripts: Int = 0
    /// Resident memory of the worker process, bytes.
    public var residentBytes: Int = 0
    /// Connections open now.
    public var openConnections: Int = 0
    /// Per script (`customer/name`): requests answered and failures by kind, for the
    /// scripts that have served at least one request on this worker.
    public var scriptCounters: [String: ScriptCounters] = [:]
    /// The counters above split by the runtime and rules versions they were made
    /// under, one entry per pair the worker ran (cumulative, like the rest), so a
    /// rollout charges a stage only what its version did: counts of a rolled-back
    /// version that arrive in a later heartbeat stay with that version. Nil from a
    /// worker of a build that predates them (see `VersionCounts.attributed`).
    public var byVersion: [VersionCounts]?
    /// The scripts under a gradual deployment, counted by version. Nil from a worker
    /// of a build that predates deployments.
    public var splits: [SplitCounts]?

    /// Most distinct signatures a worker keeps; more are folded into one entry.
    public static let maxSignatures = 200

    /// Creates empty stats.
    public init() {}

    // Every field is optional on the wire: a worker of an older or newer build (a
    // binary rollout runs both at once) still reports what it has.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        requests = try container.decodeIfPresent(Int.self, forKey: .requests) ?? 0
        statuses = try container.decodeIfPresent([String: Int].self, forKey: .statuses) ?? [:]
        errors = try container.decodeIfPresent([String: Int].self, forKey: .errors) ?? [:]
        platformErrors = try container.decodeIfPresent(Int.self, forKey: .platformErrors) ?? 0
        signatures = try container.decodeIfPresent([String: Int].self, forKey: .signatures) ?? [:]
        platformSignatures = try container.decodeIfPresent([String: Int].self, forKey: .platformSignatures) ?? [:]
        latency = try container.decodeIfPresent(LatencyHistogram.self, forKey: .latency) ?? LatencyHistogram()
        versions = try container.decodeIfPresent(ArtifactVersions.self, forKey: .versions) ?? ArtifactVersions()
        scripts = try container.decodeIfPresent(Int.self, forKey: .scripts) ?? 0
        residentBytes = try container.decodeIfPresent(Int.self, forKey: .residentBytes) ?? 0
        openConnections = try container.decodeIfPresent(Int.self, forKey: .openConnections) ?? 0
        scriptCounters = try container.decodeIfPresent([String: ScriptCounters].self, forKey: .scriptCounters) ?? [:]
        byVersion = try container.decodeIfPresent([VersionCounts].self, forKey: .byVersion)
        splits = try container.decodeIfPresent([SplitCounts].self, forKey: .splits)
    }

    /// The error kinds that are the customer script's own failures (what a gate
    /// compares as script errors).
    public static let scriptErrorKinds: [RequestErrorKind] = [.scriptError, .limitCPU, .limitMemory, .limitWall]

    /// Customer script errors: the sum of `scriptErrorKinds`.
    public var scriptErrors: Int {
        Self.scriptErrorKinds.reduce(0) { $0 + (errors[$1.rawValue] ?? 0) }
    }

    /// Counts one script error signature, keeping the table bounded.
    public mutating func countSignature(_ signature: String) {
        Self.count(signature, in: &signatures)
    }

    /// Counts one platform error with its signature.
    public mutating func countPlatformError(_ signature: String) {
        platformErrors += 1
        Self.count(signature, in: &platformSignatures)
    }

    private static func count(_ signature: String, in table: inout [String: Int]) {
        if table[signature] != nil || table.count < maxSignatures {
            table[signature, default: 0] += 1
        } else {
            table["(other signatures)", default: 0] += 1
        }
    }
}

/// One script's cumulative counters on one worker.
public struct ScriptCounters: Codable, Sendable, Equatable {
    /// Requests answered by the script (errors included).
    public var requests: Int = 0
    /// Failures by error kind.
    public var errors: [String: Int] = [:]

    /// Creates counters.
    public init(requests: Int = 0, errors: [String: Int] = [:]) {
        self.requests = requests
        self.errors = errors
    }
}

/// What a worker counted while it ran one pair of runtime and rules versions:
/// cumulative for the worker's life, like every counter of `WorkerStats`.
public struct VersionCounts: Codable, Sendable, Equatable {
    /// The runtime version the counts were made under.
    public var runtime: Int
    /// The rules version the counts were made under.
    public var rules: Int
    /// Requests answered.
    public var requests: Int = 0
    /// Platform errors (throws or limits in the runtime or a rule, artifacts that
    /// failed to load: a load failure counts under the version that failed).
    public var platformErrors: Int = 0
    /// Customer script errors (`WorkerStats.scriptErrorKinds`).
    public var scriptErrors: Int = 0
    /// Platform error signatures with counts.
    public var platformSignatures: [String: Int] = [:]
    /// Latency of the answered requests.
    public var latency = LatencyHistogram()

    /// Empty counts for a pair of versions.
    public init(runtime: Int, rules: Int) {
        self.runtime = runtime
        self.rules = rules
    }

    /// A worker's whole counters, as if all made under the versions it runs now.
    public init(totalsOf stats: WorkerStats) {
        runtime = stats.versions.runtime
        rules = stats.versions.rules
        requests = stats.requests
        platformErrors = stats.platformErrors
        scriptErrors = stats.scriptErrors
        platformSignatures = stats.platformSignatures
        latency = stats.latency
    }

    /// The version of `kind` these counts were made under; nil for the kinds not
    /// counted per version (`ArtifactKind.isCountedPerVersion`: the worker's stats
    /// say which it runs).
    public func version(of kind: ArtifactKind) -> Int? {
        switch kind {
        case .runtime: runtime
        case .rules: rules
        case .binary, .policy: nil
        }
    }

    /// Whether `other` counts the same pair of versions.
    public func sameVersions(as other: VersionCounts) -> Bool {
        runtime == other.runtime && rules == other.rules
    }

    /// Adds counts of the same versions.
    public mutating func add(_ other: VersionCounts) {
        requests += other.requests
        platformErrors += other.platformErrors
        scriptErrors += other.scriptErrors
        for (signature, count) in other.platformSignatures { platformSignatures[signature, default: 0] += count }
        latency.add(other.latency)
    }

    /// What was counted since `earlier` (a snapshot of the same cumulative counts);
    /// never negative.
    public func since(_ earlier: VersionCounts?) -> VersionCounts {
        guard let earlier else { return self }
        var result = VersionCounts(runtime: runtime, rules: rules)
        result.requests = max(0, requests - earlier.requests)
        result.platformErrors = max(0, platformErrors - earlier.platformErrors)
        result.scriptErrors = max(0, scriptErrors - earlier.scriptErrors)
        for (signature, count) in platformSignatures {
            let delta = count - (earlier.platformSignatures[signature] ?? 0)
            if delta > 0 { result.platformSignatures[signature] = delta }
        }
        result.latency = latency.since(earlier.latency)
        return result
    }

    /// The per-version table of a worker whose build sends none (`byVersion` nil),
    /// built by whoever receives its heartbeats: the difference between two
    /// consecutive heartbeats is charged to the versions both report; an interval
    /// in which the versions changed is left out, since nothing says which version
    /// made its counts (at most one heartbeat, about 200 ms, of that worker).
    ///
    /// - Parameters:
    ///   - table: the table built so far for this worker.
    ///   - previous: the worker's previous heartbeat (nil: the first one, which
    ///     starts the count).
    ///   - current: the heartbeat just received.
    public static func attributed(_ table: [VersionCounts], previous: WorkerStats?, current: WorkerStats) -> [VersionCounts] {
        guard let previous, previous.versions.runtime == current.versions.runtime,
              previous.versions.rules == current.versions.rules, current.requests >= previous.requests
        else { return table }
        let delta = VersionCounts(totalsOf: current).since(VersionCounts(totalsOf: previous))
        var result = table
        if let index = result.firstIndex(where: { $0.sameVersions(as: delta) }) {
            result[index].add(delta)
        } else {
            result.append(delta)
        }
        return result
    }
}

/// The worker's side of `WorkerStats.byVersion`: splits its cumulative counters
/// at every artifact change, without a cost per request. The hot path keeps
/// counting into `WorkerStats` alone; at a change (and for a heartbeat) the
/// difference since the last change is charged to the versions that made it.
public struct VersionLedger: Sendable {
    /// The counts of segments already closed, by versions, oldest first.
    public private(set) var closed: [VersionCounts] = []
    /// The worker's totals when the current segment began.
    private var segmentStart = VersionCounts(runtime: 0, rules: 0)

    /// Most pairs of versions kept; past it the oldest goes (a gate only ever asks
    /// for the versions of the rollouts running now).
    public static let maxEntries = 16

    /// Creates an empty ledger.
    public init() {}

    /// Ends the current segment: what `stats` counted since it began is charged
    /// to `versions` (by default the versions `stats` says it runs), and a new
    /// segment begins. Call it *before* the versions in `stats` change, and with
    /// `versions` to charge counts made for another version (a load failure).
    public mutating func close(_ stats: WorkerStats, chargingTo versions: (runtime: Int, rules: Int)? = nil) {
        let totals = VersionCounts(totalsOf: stats)
        var delta = totals.since(segmentStart)
        if let versions {
            delta.runtime = versions.runtime
            delta.rules = versions.rules
        }
        Self.merge(delta, into: &closed)
        segmentStart = totals
    }

    /// The table a heartbeat carries: the closed segments plus the current one.
    public func table(_ stats: WorkerStats) -> [VersionCounts] {
        var table = closed
        Self.merge(VersionCounts(totalsOf: stats).since(segmentStart), into: &table)
        return table
    }

    private static func merge(_ counts: VersionCounts, into table: inout [VersionCounts]) {
        if let index = table.firstIndex(where: { $0.sameVersions(as: counts) }) {
            table[index].add(counts)
        } else {
            table.append(counts)
            if table.count > maxEntries { table.removeFirst(table.count - maxEntries) }
        }
    }
}
