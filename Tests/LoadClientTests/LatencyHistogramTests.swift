import Testing
@testable import LoadClient

/// Percentiles from the bucketed histogram stay within its stated precision.
@Suite("LatencyHistogram")
struct LatencyHistogramTests {
    @Test("buckets tile the values without gaps")
    func buckets() {
        for value: UInt64 in [0, 1, 127, 128, 129, 255, 256, 1000, 65_535, 1_000_000, 123_456_789] {
            let index = LatencyHistogram.index(of: value)
            #expect(LatencyHistogram.lowerBound(of: index) <= value)
            #expect(LatencyHistogram.lowerBound(of: index + 1) > value)
        }
    }

    @Test("percentiles are within 1.6 % and merging adds up")
    func percentiles() throws {
        var low = LatencyHistogram()
        var high = LatencyHistogram()
        for value in UInt64(1)...10_000 {
            if value <= 5000 { low.record(microseconds: value) } else { high.record(microseconds: value) }
        }
        var all = low
        all.merge(high)
        #expect(all.count == 10_000)
        #expect(all.minMicroseconds == 1)
        #expect(all.maxMicroseconds == 10_000)
        for (fraction, exact) in [(0.5, 5000.0), (0.9, 9000.0), (0.99, 9900.0)] {
            let value = Double(try #require(all.percentile(fraction)))
            #expect(abs(value - exact) / exact < 0.016)
        }
        #expect(all.percentile(1.0) == 10_000)
        #expect(LatencyHistogram().percentile(0.5) == nil)
    }
}
