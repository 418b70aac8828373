#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A one-sided two-proportion test of whether a stage's error proportion is greater than its
/// baseline's: H0 `p_stage ≤ p_baseline` against H1 `p_stage > p_baseline`.
///
/// One-sided because only a worse stage matters: a stage with *fewer* errors than
/// its baseline must never fail for being different.
///
/// Two methods, chosen by the table's expected counts under H0:
/// - **pooled z**: the normal approximation, good when every expected count is at
///   least `minimumExpectedCount` (the usual rule of thumb, 5);
/// - **Fisher's exact**: the hypergeometric upper tail, conditional on the total
///   number of errors; used when any expected count is smaller, where the normal
///   approximation is badly off (with 3/20 against 0/20 it gives p ≈ 0.036, the exact
///   answer is 3/26 ≈ 0.115).
public struct TwoProportionTest: Codable, Sendable, Equatable {
    /// How the p-value was computed.
    public enum Method: String, Codable, Sendable {
        /// The pooled two-proportion z-test (normal approximation).
        case pooledZ = "pooled-z"
        /// Fisher's exact test, one-sided (hypergeometric upper tail).
        case fisherExact = "fisher-exact"
    }

    /// The method that gave `pValue`.
    public var method: Method
    /// The one-sided p-value: the chance, if the stage were no worse than the
    /// baseline, of seeing a difference at least this large.
    public var pValue: Double
    /// The pooled z statistic, reported whenever it is defined (also beside an
    /// exact p-value, for reference); nil when no errors or only errors were seen.
    public var z: Double?
    /// The smallest of the four expected counts under H0, which chose the method.
    public var smallestExpectedCount: Double

    /// Below this expected count in any cell, the exact test is used.
    public static let minimumExpectedCount = 5.0

    /// Creates a result; `oneSided(…)` computes one.
    public init(method: Method, pValue: Double, z: Double?, smallestExpectedCount: Double) {
        self.method = method
        self.pValue = pValue
        self.z = z
        self.smallestExpectedCount = smallestExpectedCount
    }

    /// Whether the stage is worse than the baseline at significance level `alpha`.
    public func isSignificant(at alpha: Double) -> Bool {
        pValue <= alpha
    }

    /// Tests whether `stageCount / stageTotal` is greater than
    /// `baselineCount / baselineTotal`.
    ///
    /// Counts are clamped into `0...total` (a window can count more platform errors
    /// than requests, e.g. an artifact that failed to load with no request at all;
    /// for a proportion that is "every request failed").
    ///
    /// - Returns: nil when either total is 0: there is nothing to test.
    public static func oneSided(
        stageCount: Int, stageTotal: Int, baselineCount: Int, baselineTotal: Int
    ) -> TwoProportionTest? {
        guard stageTotal > 0, baselineTotal > 0 else { return nil }
        let n1 = stageTotal
        let n2 = baselineTotal
        let x1 = min(max(stageCount, 0), n1)
        let x2 = min(max(baselineCount, 0), n2)
        let total = Double(n1) + Double(n2)
        let errors = Double(x1) + Double(x2)
        let expected = [
            Double(n1) * errors / total, Double(n1) * (total - errors) / total,
            Double(n2) * errors / total, Double(n2) * (total - errors) / total,
        ]
        let smallest = expected.min() ?? 0
        let z = pooledZ(x1: x1, n1: n1, x2: x2, n2: n2)
        if smallest < minimumExpectedCount {
            let p = fisherUpperTail(x1: x1, n1: n1, x2: x2, n2: n2)
            return TwoProportionTest(method: .fisherExact, pValue: p, z: z, smallestExpectedCount: smallest)
        }
        // With every expected count ≥ 5 both kinds of outcome were seen, so the pooled
        // variance is positive and z is defined; the guard only keeps that true.
        guard let z else {
            return TwoProportionTest(method: .pooledZ, pValue: 1, z: nil, smallestExpectedCount: smallest)
        }
        return TwoProportionTest(method: .pooledZ, pValue: normalUpperTail(z), z: z, smallestExpectedCount: smallest)
    }

    // MARK: - The pooled z-test

    /// z = (p1 − p2) / √(p(1−p)(1/n1 + 1/n2)) with the pooled p = (x1+x2)/(n1+n2):
    /// under H0 both groups share one rate, so its best estimate pools them. Nil when
    /// p is 0 or 1 (no variance: the groups cannot differ).
    static func pooledZ(x1: Int, n1: Int, x2: Int, n2: Int) -> Double? {
        let p1 = Double(x1) / Double(n1)
        let p2 = Double(x2) / Double(n2)
        let pooled = (Double(x1) + Double(x2)) / (Double(n1) + Double(n2))
        let variance = pooled * (1 - pooled) * (1 / Double(n1) + 1 / Double(n2))
        guard variance > 0 else { return nil }
        return (p1 - p2) / variance.squareRoot()
    }

    /// P(Z ≥ z) for a standard normal Z, as erfc(z/√2)/2: the complementary error
    /// function keeps full relative precision far out in the tail, where
    /// `1 − Φ(z)` would cancel to 0 (z = 9 gives 1.1e-19, not 0).
    static func normalUpperTail(_ z: Double) -> Double {
        0.5 * erfc(z / 2.0.squareRoot())
    }

    // MARK: - Fisher's exact test

    /// P(X ≥ x1) where X is the stage's error count given the table's margins.
    ///
    /// Conditional on K = x1 + x2 errors among N = n1 + n2 requests, H0 (one common
    /// rate) makes every choice of which requests erred equally likely, so the stage's
    /// share X is hypergeometric: P(X = k) = C(K, k)·C(N−K, n1−k) / C(N, n1), for k
    /// from max(0, n1−(N−K)) to min(K, n1). Factorials overflow a Double past 170!
    /// and these coefficients past about C(1030, 515), so the first term is computed
    /// in logs (log-gamma) and the rest by the exact ratio of neighbouring terms,
    /// which stays near 1 and never overflows. The price is precision: lnΓ of a
    /// number near N is about N·ln N, so its last-bit rounding becomes a relative
    /// error of roughly N·ln N·2⁻⁵³ in P (about 1e-12 at N = 2000) — irrelevant next
    /// to α = 0.01.
    static func fisherUpperTail(x1: Int, n1: Int, x2: Int, n2: Int) -> Double {
        let errors = x1 + x2
        let population = n1 + n2
        let good = population - errors
        let low = max(0, n1 - good)
        let high = min(errors, n1)
        guard x1 > low else { return 1 }  // the whole support: P = 1
        guard x1 <= high else { return 0 }

        // The pmf rises to its mode and falls after it. Sum the tail that lies away
        // from the mode, starting next to x1, so terms only shrink and the loop can
        // stop once they no longer change the sum: upward from x1 when x1 is past
        // the mode, else the lower tail downward from x1 − 1, and P = 1 − that.
        let mode = Int((Double(n1 + 1) * Double(errors + 1) / Double(population + 2)).rounded(.down))
        if x1 > mode {
            var term = exp(logHypergeometric(k: x1, errors: errors, good: good, drawn: n1))
            var sum = 0.0
            var k = x1
            while true {
                sum += term
                if k == high || term <= sum * 1e-17 { break }
                // P(k+1)/P(k) = (K−k)(n1−k) / ((k+1)(N−K−n1+k+1))
                term *= Double(errors - k) * Double(n1 - k) / (Double(k + 1) * Double(good - n1 + k + 1))
                k += 1
            }
            return min(1, max(0, sum))
        } else {
            var k = x1 - 1
            var term = exp(logHypergeometric(k: k, errors: errors, good: good, drawn: n1))
            var sum = 0.0
            while true {
                sum += term
                if k == low || term <= sum * 1e-17 { break }
                // P(k−1)/P(k) = k(N−K−n1+k) / ((K−k+1)(n1−k+1))
                term *= Double(k) * Double(good - n1 + k) / (Double(errors - k + 1) * Double(n1 - k + 1))
                k -= 1
            }
            return min(1, max(0, 1 - sum))
        }
    }

    /// log P(X = k) of the hypergeometric distribution: `errors` marked items and
    /// `good` unmarked ones, `drawn` drawn without replacement.
    static func logHypergeometric(k: Int, errors: Int, good: Int, drawn: Int) -> Double {
        logChoose(errors, k) + logChoose(good, drawn - k) - logChoose(errors + good, drawn)
    }

    /// log C(n, k) = lnΓ(n+1) − lnΓ(k+1) − lnΓ(n−k+1).
    static func logChoose(_ n: Int, _ k: Int) -> Double {
        logGamma(Double(n) + 1) - logGamma(Double(k) + 1) - logGamma(Double(n - k) + 1)
    }

    /// lnΓ(x) for x > 0. `lgamma_r` rather than `lgamma`: the latter writes the
    /// process-wide `signgam`, a data race when two gates run at once.
    static func logGamma(_ x: Double) -> Double {
        var sign: Int32 = 0
        return lgamma_r(x, &sign)
    }
}
