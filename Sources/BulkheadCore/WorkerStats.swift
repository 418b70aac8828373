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
    /// Error signatures with counts, platform and script alike, bounded in number.
    public var signatures: [String: Int] = [:]
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

    /// Most distinct signatures a worker keeps; more are folded into one entry.
    public static let maxSignatures = 200

    /// Creates empty stats.
    public init() {}

    /// Counts one signature, keeping the table bounded.
    public mutating func countSignature(_ signature: String) {
        if signatures[signature] != nil || signatures.count < Self.maxSignatures {
            signatures[signature, default: 0] += 1
        } else {
            signatures["(other signatures)", default: 0] += 1
        }
    }
}
