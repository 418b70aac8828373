import Rollout
import Testing

/// Every expected p-value here was computed outside this code: by hand from the
/// hypergeometric formula where the sum is short (shown in the comments), and
/// otherwise with Python's exact `fractions` over `math.comb`, cross-checked with
/// SciPy 1.17 (`scipy.stats.fisher_exact(..., alternative="greater")`,
/// `scipy.stats.norm.sf`).
@Suite("One-sided test for two proportions")
struct TwoProportionTestTests {
    private func test(_ x1: Int, _ n1: Int, _ x2: Int, _ n2: Int) throws -> TwoProportionTest {
        try #require(TwoProportionTest.oneSided(stageCount: x1, stageTotal: n1, baselineCount: x2, baselineTotal: n2))
    }

    private func close(_ actual: Double, _ expected: Double, relative: Double = 1e-9) -> Bool {
        abs(actual - expected) <= relative * max(abs(expected), 1e-300)
    }

    // MARK: Fisher's exact test (small expected counts)

    @Test("3/20 vs 0/20: exact, p = (20·19·18)/(40·39·38) = 3/26, not significant")
    func threeOfTwentyVersusNone() throws {
        // K = 3 errors in all: the stage has all three. P(X = 3) = C(3,3)·C(37,17)/C(40,20)
        // = (20·19·18)/(40·39·38) = 6840/59280 = 3/26.
        let result = try test(3, 20, 0, 20)
        #expect(result.method == .fisherExact)
        #expect(close(result.pValue, 3.0 / 26.0))
        #expect(!result.isSignificant(at: 0.01))
        // The normal approximation would have said z = 1.8009, p ≈ 0.036: a third of
        // the true value, which is why small counts go exact.
        let z = try #require(result.z)
        #expect(close(z, 1.8009006755629924))
    }

    @Test("6/20 vs 0/20 is just above α = 0.01, 7/20 vs 0/20 below it")
    func significanceBoundary() throws {
        // (20·19·18·17·16·15)/(40·39·38·37·36·35) = 27907200/2763633600 = 34/3367
        let six = try test(6, 20, 0, 20)
        #expect(six.method == .fisherExact)
        #expect(close(six.pValue, 34.0 / 3367.0))
        #expect(!six.isSignificant(at: 0.01))
        // … × 14/34 = 2/481
        let seven = try test(7, 20, 0, 20)
        #expect(close(seven.pValue, 2.0 / 481.0))
        #expect(seven.isSignificant(at: 0.01))
    }

    @Test("3/20 vs 1/20: a two-term tail, p = 291/962")
    func twoTermTail() throws {
        // P(X=4) = (20·19·18·17)/(40·39·38·37) = 116280/2193360;
        // P(X=3) = C(4,3)·C(36,17)/C(40,20) = 4·(20·19·18·20)/(40·39·38·37) = 547200/2193360;
        // sum = 663480/2193360 = 291/962.
        let result = try test(3, 20, 1, 20)
        #expect(result.method == .fisherExact)
        #expect(close(result.pValue, 291.0 / 962.0))
    }

    @Test("2/1000 vs 1/1000: exact (expected 1.5 errors a side), p = 1/2, not significant")
    func twoVersusOnePerThousand() throws {
        // Equal group sizes and K = 3: P(X ≥ 2) = P(X ≤ 1) by symmetry, so each is 1/2.
        let result = try test(2, 1000, 1, 1000)
        #expect(result.method == .fisherExact)
        #expect(abs(result.smallestExpectedCount - 1.5) < 1e-12)
        #expect(close(result.pValue, 0.5))
        #expect(!result.isSignificant(at: 0.01))
    }

    @Test("large groups with few errors stay exact without overflow")
    func largeGroupsFewErrors() throws {
        // 4/100000 vs 0/100000: P = Π_{i<4} (100000−i)/(200000−i) = 4999750003/79998400006.
        let four = try test(4, 100_000, 0, 100_000)
        #expect(four.method == .fisherExact)
        #expect(close(four.pValue, 4_999_750_003.0 / 79_998_400_006.0))
        // 5/1000 vs 0/1000 = 248253/7984006 (fractions).
        #expect(close(try test(5, 1000, 0, 1000).pValue, 248_253.0 / 7_984_006.0))
        // 10/5000 vs 2/20000: 4.496738944416904e-06 (fractions); significant.
        let skewed = try test(10, 5000, 2, 20_000)
        #expect(skewed.method == .fisherExact)
        #expect(close(skewed.pValue, 4.496738944416904e-06))
        #expect(skewed.isSignificant(at: 0.01))
    }

    @Test("a stage no worse than its baseline: the lower tail, p near 1")
    func stageBetterThanBaseline() throws {
        // 1/1000 vs 3/1000: 1 − P(X = 0) = 7486503/7984006 (fractions).
        #expect(close(try test(1, 1000, 3, 1000).pValue, 7_486_503.0 / 7_984_006.0))
        // 2/1000 vs 3/1000: 6489503/7984006 (fractions).
        #expect(close(try test(2, 1000, 3, 1000).pValue, 6_489_503.0 / 7_984_006.0))
        #expect(try test(0, 20, 3, 20).pValue == 1)
        #expect(try test(0, 20, 0, 20).pValue == 1)
    }

    @Test("nearly every request failing: few successes are the small cells")
    func nearlyAllErrors() throws {
        // 50/50 vs 45/50: P(X = 50) = (50·49·48·47·46)/(100·99·98·97·96) = 1081/38412.
        let all = try test(50, 50, 45, 50)
        #expect(all.method == .fisherExact)
        #expect(close(all.pValue, 1081.0 / 38412.0))
        // 49/50 vs 45/50 = 24863/243276, 45/50 vs 49/50 = 80011/81092 (fractions).
        #expect(close(try test(49, 50, 45, 50).pValue, 24863.0 / 243_276.0))
        #expect(close(try test(45, 50, 49, 50).pValue, 80011.0 / 81092.0))
    }

    // MARK: Pooled z-test (every expected count ≥ 5)

    @Test("30/1000 vs 1/1000: pooled z = 5.2494, p = 7.63e-8, significant")
    func thirtyVersusOnePerThousand() throws {
        // p = 31/2000, se = √(p(1−p)·2/1000), z = 0.029/se = 5.24939545316719;
        // norm.sf(z) = 7.629958705098933e-08.
        let result = try test(30, 1000, 1, 1000)
        #expect(result.method == .pooledZ)
        #expect(close(try #require(result.z), 5.24939545316719))
        #expect(close(result.pValue, 7.629958705098933e-08, relative: 1e-7))
        #expect(result.isSignificant(at: 0.01))
    }

    @Test("20/1000 vs 10/1000: z = 1.8396, p = 0.0329, not significant at 0.01")
    func twentyVersusTen() throws {
        let result = try test(20, 1000, 10, 1000)
        #expect(result.method == .pooledZ)
        #expect(close(try #require(result.z), 1.839590920463876))
        #expect(close(result.pValue, 0.03291415918759529, relative: 1e-7))
        #expect(!result.isSignificant(at: 0.01))
    }

    @Test("600/100000 vs 500/100000: a small increase is significant on much traffic")
    func smallIncreaseLargeTraffic() throws {
        let result = try test(600, 100_000, 500, 100_000)
        #expect(result.method == .pooledZ)
        #expect(close(try #require(result.z), 3.0234393679671907))
        #expect(close(result.pValue, 0.00124959551816612, relative: 1e-7))
    }

    @Test("far in the tail the p-value stays positive instead of rounding to 0")
    func farTail() throws {
        let result = try test(1000, 10_000, 0, 10_000)
        #expect(result.method == .pooledZ)
        #expect(result.pValue > 0)
        #expect(result.pValue < 1e-100)
    }

    @Test("no requests on a side: nothing to test")
    func emptySide() {
        #expect(TwoProportionTest.oneSided(stageCount: 0, stageTotal: 0, baselineCount: 1, baselineTotal: 10) == nil)
        #expect(TwoProportionTest.oneSided(stageCount: 1, stageTotal: 10, baselineCount: 0, baselineTotal: 0) == nil)
    }

    @Test("more errors than requests count as every request failing")
    func countsClamped() throws {
        // 25/20 is read as 20/20.
        #expect(try test(25, 20, 0, 20) == test(20, 20, 0, 20))
        // And a negative count as none.
        #expect(try test(-3, 20, 0, 20) == test(0, 20, 0, 20))
    }
}
