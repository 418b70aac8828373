/// A fixed-bucket latency histogram that is cheap to record into, to send in a
/// heartbeat and to subtract (for the numbers of one time window).
///
/// Buckets are log-linear: four per power of two of microseconds, from 1 µs to
/// about 70 s, so a percentile is exact to within about 19%.
public struct LatencyHistogram: Codable, Sendable, Equatable {
    /// Bucket counts; bucket `i` holds latencies up to `upperBound(i)` microseconds.
    public private(set) var counts: [Int]

    /// Buckets in every histogram.
    public static let bucketCount = 4 * 26 + 1

    /// An empty histogram.
    public init() {
        counts = Array(repeating: 0, count: Self.bucketCount)
    }

    /// Counts of all recorded latencies.
    public var total: Int { counts.reduce(0, +) }

    /// Records one latency.
    public mutating func record(nanoseconds: UInt64) {
        counts[Self.bucket(forMicroseconds: nanoseconds / 1000)] += 1
    }

    /// The bucket that holds `micros`.
    static func bucket(forMicroseconds micros: UInt64) -> Int {
        if micros <= 1 { return 0 }
        let exponent = 63 - micros.leadingZeroBitCount  // floor(log2)
        // Two bits below the top one pick the quarter within the power of two.
        let quarter = exponent >= 2 ? Int((micros >> UInt64(exponent - 2)) & 0b11) : Int((micros << UInt64(2 - exponent)) & 0b11)
        return min(Self.bucketCount - 1, 1 + (exponent * 4) + quarter)
    }

    /// The largest latency in microseconds that bucket `index` holds.
    public static func upperBound(ofBucket index: Int) -> Double {
        if index == 0 { return 1 }
        let exponent = (index - 1) / 4
        let quarter = (index - 1) % 4
        let base = Double(UInt64(1) << UInt64(exponent))
        return base * (1 + Double(quarter + 1) / 4)
    }

    /// The latency at quantile `q` (0...1) in milliseconds, or nil when empty.
    public func quantileMilliseconds(_ q: Double) -> Double? {
        let all = total
        guard all > 0 else { return nil }
        let rank = max(1, Int((q * Double(all)).rounded(.up)))
        var seen = 0
        for (index, count) in counts.enumerated() {
            seen += count
            if seen >= rank { return Self.upperBound(ofBucket: index) / 1000 }
        }
        return Self.upperBound(ofBucket: Self.bucketCount - 1) / 1000
    }

    /// Adds another histogram's counts.
    public mutating func add(_ other: LatencyHistogram) {
        guard other.counts.count == counts.count else { return }
        for index in counts.indices { counts[index] += other.counts[index] }
    }

    /// The counts recorded since `earlier` (a snapshot of the same cumulative
    /// histogram); never negative, so a restarted worker does not go backwards.
    public func since(_ earlier: LatencyHistogram) -> LatencyHistogram {
        var result = LatencyHistogram()
        guard earlier.counts.count == counts.count else { return self }
        for index in counts.indices { result.counts[index] = max(0, counts[index] - earlier.counts[index]) }
        return result
    }

    // A histogram from the wire must have the right shape: a worker of another
    // build is still trusted only as far as its numbers are well-formed.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let decoded = try container.decode([Int].self)
        guard decoded.count == Self.bucketCount, decoded.allSatisfy({ $0 >= 0 }) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "a latency histogram has \(Self.bucketCount) non-negative counts")
        }
        counts = decoded
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(counts)
    }
}
