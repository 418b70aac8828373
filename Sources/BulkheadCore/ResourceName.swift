/// The names of customers, scripts and cohorts: `[a-z0-9][a-z0-9-]{0,62}`.
///
/// They travel in host names and paths, so the rule is the DNS label rule, lower case.
public enum ResourceName {
    /// Whether `name` is a valid customer, script or cohort name.
    public static func isValid(_ name: some StringProtocol) -> Bool {
        let bytes = name.utf8
        guard let first = bytes.first, bytes.count <= 63, isLowerAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    /// The rule in words, for error messages.
    public static let rule = "1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }
}
