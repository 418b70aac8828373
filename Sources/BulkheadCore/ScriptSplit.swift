#if canImport(Glibc)
import Glibc
#endif

/// A script under a gradual deployment, as a worker runs it: a share of the
/// script's requests goes to a candidate version, the rest to the active one.
///
/// Which version a request gets depends only on its key (the header the customer
/// named, else the client's address) and the deployment: the key hashes to one of
/// `buckets` buckets, and buckets below the candidate's share go to the candidate.
/// So one user stays on one version while the share holds, and a share that only
/// grows moves users only from the active version to the candidate.
public struct ScriptSplit: Codable, Sendable, Equatable {
    /// The deployment that set the split (it also salts the hash: each deployment
    /// picks its own first users).
    public var deployment: Int
    /// The candidate version.
    public var version: Int
    /// The candidate's Lua source (empty in the store's setting, which names the
    /// version only).
    public var source: String
    /// The candidate's share of requests, in percent (0...100).
    public var percent: Double
    /// The request header whose value is the key (lower case), or nil for the
    /// client's address.
    public var keyHeader: String?
    /// When a new share of the same deployment replaces `previousPercent`: the
    /// moment (`monotonicNanoseconds`) every worker of the pool switches at. The
    /// supervisor sets it when it sends a new share, so that no worker serves the
    /// new share while another still serves the old one: a client whose requests
    /// land on both never goes back from the candidate. Nil: `percent` from now.
    public var switchAt: UInt64?
    /// The share served until `switchAt`.
    public var previousPercent: Double?

    /// Creates a split.
    public init(deployment: Int, version: Int, source: String = "", percent: Double, keyHeader: String? = nil) {
        self.deployment = deployment
        self.version = version
        self.source = source
        self.percent = percent
        self.keyHeader = keyHeader
    }

    /// The host's monotonic clock (CLOCK_MONOTONIC, shared by its processes), in ns.
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// The share in force at `now` (`monotonicNanoseconds`).
    public func percent(at now: UInt64) -> Double {
        if let switchAt, let previousPercent, now < switchAt { return previousPercent }
        return percent
    }

    /// How finely a share is cut: 0.01 percent.
    public static let buckets: UInt64 = 10_000

    /// The buckets that go to the candidate under `percent`: those below this.
    public static func candidateBuckets(_ percent: Double) -> UInt64 {
        let share = percent.isFinite ? min(max(percent, 0), 100) : 0
        return UInt64((share * Double(buckets) / 100).rounded())
    }

    /// The bucket of `key` under this deployment (FNV-1a, 64 bits, salted with the
    /// deployment id; then a final mix so that near keys spread).
    public func bucket<Key: Collection<UInt8>>(of key: Key) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var salt = UInt64(truncatingIfNeeded: deployment)
        for _ in 0..<8 {
            hash = (hash ^ (salt & 0xff)) &* 0x0000_0100_0000_01b3
            salt >>= 8
        }
        for byte in key {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        // The finalizer of SplitMix64: FNV's low bits alone spread short keys poorly.
        hash ^= hash >> 30
        hash = hash &* 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 27
        hash = hash &* 0x94d0_49bb_1331_11eb
        hash ^= hash >> 31
        return hash % Self.buckets
    }

    /// Whether a request with `key` goes to the candidate at `now`
    /// (`monotonicNanoseconds`; by default the share after any switch).
    public func takesCandidate<Key: Collection<UInt8>>(_ key: Key, at now: UInt64 = .max) -> Bool {
        let share = Self.candidateBuckets(percent(at: now))
        if share >= Self.buckets { return true }
        if share == 0 { return false }
        return bucket(of: key) < share
    }

    /// The same split without the candidate's source (what the store and reports keep).
    public var withoutSource: ScriptSplit {
        var copy = self
        copy.source = ""
        return copy
    }

    /// This split as sent to workers that serve `previous` now: a new share of the
    /// same deployment and candidate switches at `now + delay` nanoseconds on every
    /// worker at once.
    public func switching(from previous: ScriptSplit?, now: UInt64, delay: UInt64) -> ScriptSplit {
        var copy = self
        copy.switchAt = nil
        copy.previousPercent = nil
        if let previous, previous.deployment == deployment, previous.version == version, previous.percent != percent {
            copy.previousPercent = previous.percent
            copy.switchAt = now + delay
        }
        return copy
    }
}
