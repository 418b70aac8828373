/// The versions of the platform artifacts a worker runs.
public struct ArtifactVersions: Codable, Sendable, Equatable, Hashable {
    /// Runtime artifact version (0: the runtime built into this binary).
    public var runtime: Int
    /// Rules artifact version (0: no rules).
    public var rules: Int
    /// Worker binary version (0: the binary the supervisor was started with).
    public var binary: Int

    /// Creates versions.
    public init(runtime: Int = 0, rules: Int = 0, binary: Int = 0) {
        self.runtime = runtime
        self.rules = rules
        self.binary = binary
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
