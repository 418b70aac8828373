/// The prefixes of bulkhead's tokens (`PREFIX_` and 40 hex digits): what a token
/// is can be told without a lookup.
public enum TokenPrefix {
    /// The admin token (`DATA/admin.token`).
    public static let admin = "bha_"
    /// A customer's API token.
    public static let customer = "bht_"
    /// A fleet host's report token (its hash in `host/NAME`).
    public static let hostReport = "bhh_"
    /// An operator session's token (the CLI's `--etcd`).
    public static let operatorSession = "bho_"
}

/// How the store keeps customers' API tokens: only their SHA-256, never the token.
///
/// A stolen database then gives no usable token; the API hashes the bearer token of
/// each request and looks the customer up by the hash.
public enum TokenHash {
    /// The hash to store for `token`: 64 lower-case hex digits.
    public static func of(token: String) -> String {
        SHA256Hasher.hex(token)
    }

    /// A new random token: `prefix` (one of ``TokenPrefix``) and 40 hex digits (160 bits).
    public static func newToken(prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        var hex = ""
        for _ in 0..<5 {
            let word = generator.next() as UInt32
            let digits = String(word, radix: 16)
            hex += String(repeating: "0", count: 8 - digits.count) + digits
        }
        return prefix + hex
    }

    /// Whether `hash` looks like a stored token hash (64 lower-case hex digits).
    public static func isWellFormed(_ hash: String) -> Bool {
        let bytes = hash.utf8
        return bytes.count == 64 && bytes.allSatisfy { byte in
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
        }
    }
}

/// Whether `lhs` and `rhs` hold the same bytes, in a time that depends only on their
/// lengths, never on where they first differ.
///
/// Use it for anything secret-derived (token hashes): an early-exit `==` tells an
/// attacker, by its timing, how many leading bytes they guessed right.
public func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
    let left = Array(lhs.utf8)
    let right = Array(rhs.utf8)
    // The length of a hash is public (always 64), so leaving early on it leaks nothing.
    guard left.count == right.count else { return false }
    var difference: UInt8 = 0
    for index in left.indices {
        difference |= left[index] ^ right[index]
    }
    return difference == 0
}
