/// Which customer's script a request is for (README, "Addressing").
///
/// - By host: a Host of three or more labels that is not an IP address,
///   `SCRIPT.CUSTOMER.anything[:port]`, names both (case-insensitive, lower-cased);
///   the script sees the whole path.
/// - By path, otherwise (an IPv4 or IPv6 literal, `localhost`, one or two labels, no
///   Host): `/CUSTOMER/SCRIPT/rest…` names them and the script sees `/rest…`, or `/`
///   when nothing follows the script's name. Path names are case-sensitive.
///
/// Names are `[a-z0-9][a-z0-9-]{0,62}`; anything else resolves to nil, which the
/// server answers 404 `no-script`. A host route with a bad name does not fall back to
/// the path.
public struct HTTPRoute: Hashable, Sendable {
    /// How the request named the script.
    public enum Addressing: Hashable, Sendable {
        /// `SCRIPT.CUSTOMER.domain`
        case host
        /// `/CUSTOMER/SCRIPT/…`
        case path
    }

    /// The customer's name (lower-case, at most 63 bytes).
    public var customer: String
    /// The script's name (lower-case, at most 63 bytes).
    public var script: String
    /// The path the script sees (`req.path`), as a range of the path buffer given to
    /// `resolve(host:path:)` (or of the parsed bytes, for `resolve(_:in:)`). It always
    /// reads a path starting with `/`: when nothing follows the script's name it is
    /// the path's own leading `/`.
    public var scriptPath: Range<Int>
    /// Whether the host or the path named the script.
    public var addressing: Addressing

    /// A route from its parts.
    public init(customer: String, script: String, scriptPath: Range<Int>, addressing: Addressing) {
        self.customer = customer
        self.script = script
        self.scriptPath = scriptPath
        self.addressing = addressing
    }

    // MARK: - Resolving

    /// The route of a parsed request; `scriptPath` indexes `bytes`, as the head does.
    public static func resolve(_ head: HTTPRequestHead, in bytes: UnsafeRawBufferPointer) -> HTTPRoute? {
        let path = head.path
        guard path.lowerBound >= 0, path.upperBound <= bytes.count else { return nil }
        var host: UnsafeRawBufferPointer?
        if let range = head.host {
            guard range.lowerBound >= 0, range.upperBound <= bytes.count else { return nil }
            host = UnsafeRawBufferPointer(rebasing: bytes[range])
        }
        guard var route = resolve(host: host, path: UnsafeRawBufferPointer(rebasing: bytes[path])) else {
            return nil
        }
        route.scriptPath = (route.scriptPath.lowerBound &+ path.lowerBound)..<(route.scriptPath.upperBound &+ path.lowerBound)
        return route
    }

    /// The route named by a Host value (nil or empty when there was none) and a path
    /// (the target before `?`). `scriptPath` indexes `path`.
    public static func resolve(host: UnsafeRawBufferPointer?, path: UnsafeRawBufferPointer) -> HTTPRoute? {
        switch hostLabels(host) {
        case .names(let script, let customer):
            guard let host,
                  let scriptName = lowercasedName(host, script),
                  let customerName = lowercasedName(host, customer)
            else { return nil }
            return HTTPRoute(customer: customerName, script: scriptName, scriptPath: 0..<path.count, addressing: .host)
        case .invalid:
            return nil
        case .notNaming:
            return resolve(path: path)
        }
    }

    /// `/CUSTOMER/SCRIPT[/rest…]`.
    private static func resolve(path: UnsafeRawBufferPointer) -> HTTPRoute? {
        guard path.count > 1, path[0] == ASCII.slash else { return nil }
        var customerEnd = 1
        while customerEnd < path.count && path[customerEnd] != ASCII.slash {
            customerEnd &+= 1
        }
        guard customerEnd < path.count else { return nil }
        let scriptStart = customerEnd &+ 1
        var scriptEnd = scriptStart
        while scriptEnd < path.count && path[scriptEnd] != ASCII.slash {
            scriptEnd &+= 1
        }
        guard let customer = exactName(path, 1..<customerEnd),
              let script = exactName(path, scriptStart..<scriptEnd)
        else { return nil }
        // Nothing after the script's name reads as `/`: the path's first byte is one.
        let rest = scriptEnd < path.count ? scriptEnd..<path.count : 0..<1
        return HTTPRoute(customer: customer, script: script, scriptPath: rest, addressing: .path)
    }

    // MARK: - Hosts

    private enum HostLabels {
        /// Three or more labels, not an IP address: the first two name script and customer.
        case names(script: Range<Int>, customer: Range<Int>)
        /// A host that cannot name anything: route by path.
        case notNaming
        /// Looks like a name but is broken (an empty label): no route.
        case invalid
    }

    private static func hostLabels(_ host: UnsafeRawBufferPointer?) -> HostLabels {
        guard let host, host.count > 0, host[0] != ASCII.leftBracket else {
            // No Host, an empty one, or an IPv6 literal `[::1]:8101`.
            return .notNaming
        }
        // One pass up to the port: where the first, second and last dots are.
        var end = host.count
        var firstDot = -1
        var secondDot = -1
        var lastDot = -1
        var emptyLabel = false
        var index = 0
        while index < end {
            let byte = host[index]
            if byte == ASCII.colon {
                end = index
                break
            }
            if byte == ASCII.dot {
                // A leading dot, or two in a row.
                if index == lastDot &+ 1 { emptyLabel = true }
                if firstDot < 0 {
                    firstDot = index
                } else if secondDot < 0 {
                    secondDot = index
                }
                lastDot = index
            }
            index &+= 1
        }
        // A fully qualified name may end with a dot (`a.b.example.`): drop it.
        if end > 0 && lastDot == end &- 1 {
            end &-= 1
            if secondDot == end { secondDot = -1 }
            if firstDot == end { firstDot = -1 }
            lastDot = -1
            var back = end &- 1
            while back >= 0 {
                if host[back] == ASCII.dot {
                    lastDot = back
                    break
                }
                back &-= 1
            }
        }
        guard secondDot >= 0 else { return .notNaming }
        // The last label all digits: an IPv4 address (or another numeric form of one);
        // no top-level domain is numeric.
        var numeric = lastDot &+ 1 < end
        index = lastDot &+ 1
        while index < end {
            if !ASCII.isDigit(host[index]) {
                numeric = false
                break
            }
            index &+= 1
        }
        if numeric { return .notNaming }
        if emptyLabel || lastDot == end &- 1 { return .invalid }
        return .names(script: 0..<firstDot, customer: (firstDot &+ 1)..<secondDot)
    }

    // MARK: - Names

    /// Whether `name` is a valid customer or script name: `[a-z0-9][a-z0-9-]{0,62}`.
    public static func isValidName(_ name: some StringProtocol) -> Bool {
        var count = 0
        for byte in name.utf8 {
            guard isNameByte(byte, first: count == 0) else { return false }
            count &+= 1
        }
        return count >= 1 && count <= 63
    }

    @inline(__always)
    private static func isNameByte(_ byte: UInt8, first: Bool) -> Bool {
        ASCII.isDigit(byte) || byte &- 0x61 < 26 || (!first && byte == ASCII.dash)
    }

    /// `bytes[range]` as a name, exactly as written, or nil.
    private static func exactName(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String? {
        guard range.count >= 1, range.count <= 63, range.lowerBound >= 0, range.upperBound <= bytes.count else {
            return nil
        }
        var index = range.lowerBound
        while index < range.upperBound {
            guard isNameByte(bytes[index], first: index == range.lowerBound) else { return nil }
            index &+= 1
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    /// `bytes[range]` lower-cased as a name, or nil. Checked while it is copied: names of
    /// up to 15 bytes stay inline in the String, so this allocates nothing.
    private static func lowercasedName(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String? {
        guard range.count >= 1, range.count <= 63, range.lowerBound >= 0, range.upperBound <= bytes.count else {
            return nil
        }
        var valid = true
        let name = String(unsafeUninitializedCapacity: range.count) { buffer in
            var offset = 0
            while offset < range.count && offset < buffer.count {
                let byte = ASCII.lowercased(bytes[range.lowerBound &+ offset])
                guard isNameByte(byte, first: offset == 0) else {
                    valid = false
                    return 0
                }
                buffer[offset] = byte
                offset &+= 1
            }
            return offset
        }
        return valid ? name : nil
    }
}
