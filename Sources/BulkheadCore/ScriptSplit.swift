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

    /// Creates a split.
    public init(deployment: Int, version: Int, source: String = "", percent: Double, keyHeader: String? = nil) {
        self.deployment = deployment
        self.version = version
        self.source = source
        self.percent = percent
        self.keyHeader = keyHeader
    }

    /// How finely a share is cut: 0.01 percent.
    public static let buckets: UInt64 = 10_000

    /// The buckets that go to the candidate: those below this.
    public var candidateBuckets: UInt64 {
        let share = percent.isFinite ? min(max(percent, 0), 100) : 0
        return UInt64((share * Double(Self.buckets) / 100).rounded())
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

    /// Whether a request with `key` goes to the candidate.
    public func takesCandidate<Key: Collection<UInt8>>(_ key: Key) -> Bool {
        let share = candidateBuckets
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
}
