#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Number formatting for the decision log, written here so the library needs no
/// Foundation (`String(format:)`).
enum Format {
    /// `x` with exactly `decimals` digits after the point; "n/a" when not finite.
    static func fixed(_ x: Double, _ decimals: Int) -> String {
        guard x.isFinite else { return "n/a" }
        let scale = (0..<max(0, decimals)).reduce(1) { value, _ in value * 10 }
        let scaled = (abs(x) * Double(scale)).rounded()
        // Beyond 2^53 the digits would be noise anyway; Swift's own shortest form is fine.
        guard scaled < 9.0e15 else { return "\(x)" }
        let units = Int(scaled)
        let sign = x < 0 && units != 0 ? "-" : ""
        guard decimals > 0 else { return sign + String(units) }
        let fraction = String(units % scale)
        let padded = String(repeating: "0", count: decimals - fraction.count) + fraction
        return "\(sign)\(units / scale).\(padded)"
    }

    /// A rate as a percentage with two decimals: `0.0312` → `"3.12%"`.
    static func percent(_ rate: Double) -> String {
        fixed(rate * 100, 2) + "%"
    }

    /// A p-value: four decimals down to 0.001, two significant digits below
    /// (`7.6e-8`), so a tiny p-value does not print as `0.0000`.
    static func probability(_ p: Double) -> String {
        guard p.isFinite else { return "n/a" }
        if p <= 0 { return "0" }
        if p >= 0.001 { return fixed(p, 4) }
        var exponent = Int(floor(log10(p)))
        var mantissa = (p / pow(10, Double(exponent)) * 10).rounded() / 10
        if mantissa >= 10 {
            mantissa /= 10
            exponent += 1
        }
        return "\(fixed(mantissa, 1))e\(exponent)"
    }

    /// Seconds with one decimal: `"10.2 s"`.
    static func seconds(_ x: Double) -> String {
        fixed(x, 1) + " s"
    }

    /// Milliseconds with one decimal: `"251.3 ms"`.
    static func milliseconds(_ x: Double) -> String {
        fixed(x, 1) + " ms"
    }
}
