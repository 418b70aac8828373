import BulkheadCore

/// Thresholds a deployment asks for on top of its cohort's gate. Each one can only
/// make the gate stricter: a value looser than the cohort's is ignored, so no
/// deployment can let through what its cohort's gate would stop.
public struct GateTightening: Codable, Sendable, Equatable {
    /// Longer bakes per step.
    public var bakeSeconds: Double?
    /// More requests per step before a verdict.
    public var minRequests: Int?
    /// A smaller allowed increase of the script error rate over the old version.
    public var maxErrorRateIncrease: Double?
    /// Fewer new error signatures allowed.
    public var maxNewSignatures: Int?
    /// A lower p99 latency bound, milliseconds.
    public var maxP99Milliseconds: Double?

    private enum CodingKeys: String, CodingKey {
        case bakeSeconds = "bake_seconds"
        case minRequests = "min_requests"
        case maxErrorRateIncrease = "max_error_rate_increase"
        case maxNewSignatures = "max_new_signatures"
        case maxP99Milliseconds = "max_p99_ms"
    }

    /// Creates a tightening (nil: the cohort's value).
    public init(
        bakeSeconds: Double? = nil, minRequests: Int? = nil, maxErrorRateIncrease: Double? = nil, maxNewSignatures: Int? = nil,
        maxP99Milliseconds: Double? = nil
    ) {
        self.bakeSeconds = bakeSeconds
        self.minRequests = minRequests
        self.maxErrorRateIncrease = maxErrorRateIncrease
        self.maxNewSignatures = maxNewSignatures
        self.maxP99Milliseconds = maxP99Milliseconds
    }

    /// `gate` with each of these thresholds where it is stricter.
    public func applied(to gate: CohortConfiguration.Gate) -> CohortConfiguration.Gate {
        var result = gate
        if let bakeSeconds, bakeSeconds.isFinite, bakeSeconds > gate.bakeSeconds {
            result.bakeSeconds = bakeSeconds
            result.maxBakeSeconds = max(gate.maxBakeSeconds, bakeSeconds)
        }
        if let minRequests, minRequests > gate.minRequests { result.minRequests = minRequests }
        if let maxErrorRateIncrease, maxErrorRateIncrease.isFinite, maxErrorRateIncrease >= 0,
           maxErrorRateIncrease < gate.maxErrorRateIncrease {
            result.maxErrorRateIncrease = maxErrorRateIncrease
        }
        if let maxNewSignatures, maxNewSignatures >= 0, maxNewSignatures < gate.maxNewSignatures {
            result.maxNewSignatures = maxNewSignatures
        }
        if let maxP99Milliseconds, maxP99Milliseconds.isFinite, maxP99Milliseconds > 0, maxP99Milliseconds < gate.maxP99Milliseconds {
            result.maxP99Milliseconds = maxP99Milliseconds
        }
        return result
    }
}
