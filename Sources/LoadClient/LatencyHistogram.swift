/// Latencies in microseconds in log-linear buckets: exact below 128 µs, then 64
/// buckets per power of two, so a percentile is off by at most 1/64 (1.6 %).
///
/// Fixed memory whatever the request count, and two histograms merge by adding
/// their buckets, which is how each connection's counts become the target's.
struct LatencyHistogram: Equatable {
    private(set) var buckets: [Int] = []
    private(set) var count = 0
    private(set) var sumMicroseconds: UInt64 = 0
    private(set) var minMicroseconds: UInt64 = .max
    private(set) var maxMicroseconds: UInt64 = 0

    /// Adds one latency.
    mutating func record(microseconds value: UInt64) {
        let index = Self.index(of: value)
        if index >= buckets.count {
            buckets.append(contentsOf: repeatElement(0, count: index + 1 - buckets.count))
        }
        buckets[index] += 1
        count += 1
        sumMicroseconds &+= value
        minMicroseconds = min(minMicroseconds, value)
        maxMicroseconds = max(maxMicroseconds, value)
    }

    /// Adds every latency of `other`.
    mutating func merge(_ other: LatencyHistogram) {
        if other.buckets.count > buckets.count {
            buckets.append(contentsOf: repeatElement(0, count: other.buckets.count - buckets.count))
        }
        for (index, value) in other.buckets.enumerated() { buckets[index] += value }
        count += other.count
        sumMicroseconds &+= other.sumMicroseconds
        minMicroseconds = min(minMicroseconds, other.minMicroseconds)
        maxMicroseconds = max(maxMicroseconds, other.maxMicroseconds)
    }

    /// The latency below which a `fraction` (0...1) of the recorded ones fall: the
    /// upper edge of the bucket that holds it, kept within the exact min and max.
    func percentile(_ fraction: Double) -> UInt64? {
        guard count > 0 else { return nil }
        let rank = max(1, Int((fraction * Double(count)).rounded(.up)))
        var seen = 0
        for (index, value) in buckets.enumerated() {
            seen += value
            if seen >= rank {
                let upper = Self.lowerBound(of: index + 1) - 1
                return min(max(upper, minMicroseconds), maxMicroseconds)
            }
        }
        return maxMicroseconds
    }

    /// The bucket that holds `value`.
    static func index(of value: UInt64) -> Int {
        if value < 128 { return Int(value) }
        let highestBit = 63 - value.leadingZeroBitCount
        let shift = highestBit - 6
        let mantissa = Int(value >> UInt64(shift))
        return 128 + (shift - 1) * 64 + (mantissa - 64)
    }

    /// The smallest value bucket `index` holds.
    static func lowerBound(of index: Int) -> UInt64 {
        if index < 128 { return UInt64(index) }
        let shift = (index - 128) / 64 + 1
        let mantissa = (index - 128) % 64 + 64
        return UInt64(mantissa) << UInt64(shift)
    }
}
