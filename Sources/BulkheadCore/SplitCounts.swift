/// What one version of a script did on one worker: cumulative for as long as the
/// worker has had that version loaded, like every counter of `WorkerStats`.
public struct ScriptVersionCounts: Codable, Sendable, Equatable {
    /// Requests the version answered (errors included).
    public var requests = 0
    /// Its customer script errors (`WorkerStats.scriptErrorKinds`).
    public var scriptErrors = 0
    /// Its error signatures with counts, bounded like `WorkerStats.signatures`.
    public var signatures: [String: Int] = [:]
    /// Latency of its requests.
    public var latency = LatencyHistogram()

    /// Empty counts.
    public init() {}

    /// Counts one error signature, keeping the table bounded.
    public mutating func countSignature(_ signature: String) {
        if signatures[signature] != nil || signatures.count < WorkerStats.maxSignatures {
            signatures[signature, default: 0] += 1
        } else {
            signatures["(other signatures)", default: 0] += 1
        }
    }

    /// What was counted since `earlier` (a snapshot of the same counts); never negative.
    public func since(_ earlier: ScriptVersionCounts?) -> ScriptVersionCounts {
        guard let earlier, requests >= earlier.requests else { return self }
        var result = ScriptVersionCounts()
        result.requests = requests - earlier.requests
        result.scriptErrors = max(0, scriptErrors - earlier.scriptErrors)
        for (signature, count) in signatures {
            let delta = count - (earlier.signatures[signature] ?? 0)
            if delta > 0 { result.signatures[signature] = delta }
        }
        result.latency = latency.since(earlier.latency)
        return result
    }

    /// Adds counts of another worker or window.
    public mutating func add(_ other: ScriptVersionCounts) {
        requests += other.requests
        scriptErrors += other.scriptErrors
        for (signature, count) in other.signatures { signatures[signature, default: 0] += count }
        latency.add(other.latency)
    }
}

/// A worker's counts of one script under a gradual deployment, split by version:
/// what the deployment's gate compares (the candidate against the active version,
/// over the same window). Sent in heartbeats while the split is loaded.
public struct SplitCounts: Codable, Sendable, Equatable {
    /// The script's owner.
    public var customer: String
    /// The script.
    public var name: String
    /// The deployment whose split the worker runs.
    public var deployment: Int
    /// The candidate's share the worker applies now, in percent: a worker has taken
    /// a step once it reports the step's share.
    public var percent: Double
    /// The active version.
    public var activeVersion: Int
    /// The candidate version.
    public var candidateVersion: Int
    /// What the active version answered since it was loaded.
    public var active: ScriptVersionCounts
    /// What the candidate answered since it was loaded.
    public var candidate: ScriptVersionCounts
    /// Error signatures the active version showed on this worker at any time,
    /// before the deployment too (bounded): never new for the candidate.
    public var activeKnownSignatures: [String]

    /// Creates counts.
    public init(
        customer: String, name: String, deployment: Int, percent: Double, activeVersion: Int, candidateVersion: Int,
        active: ScriptVersionCounts, candidate: ScriptVersionCounts, activeKnownSignatures: [String] = []
    ) {
        self.activeKnownSignatures = activeKnownSignatures
        self.customer = customer
        self.name = name
        self.deployment = deployment
        self.percent = percent
        self.activeVersion = activeVersion
        self.candidateVersion = candidateVersion
        self.active = active
        self.candidate = candidate
    }
}
