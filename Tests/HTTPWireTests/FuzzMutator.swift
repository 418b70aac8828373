// MARK: - Mutations of requests

/// The mutation operators of the corpus fuzzer. Each takes an input and gives a
/// variant near it: most variants still look like HTTP, so they get past the first
/// line and test the rules deeper in (framing, chunked decoding, limits).
extension RequestGenerator {
    /// The operators, by name (a failure report names the ones a case used).
    enum Mutation: CaseIterable {
        case flipBit, setByte, insertByte, insertToken, deleteByte, deleteRange
        case spliceTail, spliceInside, repeatChunk, duplicateLine, insertLine
        case lineEnding, changeNumber, flipCase, addWhitespace, truncate
    }

    /// Field lines that change framing, routing or the connection.
    static let framingLines = [
        "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked", "Transfer-Encoding: chunked, gzip",
        "Content-Length: 0", "Content-Length: 5", "Content-Length: 1000", "Content-Length: 18446744073709551616",
        "Content-Length: 3, 3", "Content-Length: -1", "Content-Length:", "Host: h", "Host: a.b.c", "Host:",
        "Expect: 100-continue", "Connection: close", "Connection: keep-alive, Upgrade", " obs-fold",
        "\tX: tab-first", "X : y", "X: a\rb", "X: \u{7F}", "Trailer: x", ": no-name",
    ]

    /// Applies `count` mutations (1–4 unless given); `donors` are other inputs to splice
    /// from. Returns the mutated bytes and the operators used.
    mutating func mutateCase(_ input: [UInt8], donors: [[UInt8]], count: Int? = nil) -> ([UInt8], [Mutation]) {
        var bytes = input
        var used: [Mutation] = []
        for _ in 0..<(count ?? (1 + rng.below(4))) {
            let mutation = rng.pick(Mutation.allCases)
            used.append(mutation)
            apply(mutation, to: &bytes, donors: donors)
        }
        return (bytes, used)
    }

    mutating func apply(_ mutation: Mutation, to bytes: inout [UInt8], donors: [[UInt8]]) {
        let position = rng.below(bytes.count + 1)
        let at = min(position, max(bytes.count - 1, 0))
        switch mutation {
        case .flipBit:
            guard !bytes.isEmpty else { return }
            bytes[at] ^= UInt8(1) << UInt8(rng.below(8))
        case .setByte:
            guard !bytes.isEmpty else { return }
            bytes[at] = rng.chance(60) ? rng.pick(Self.interesting) : UInt8(truncatingIfNeeded: rng.next())
        case .insertByte:
            bytes.insert(rng.chance(70) ? rng.pick(Self.interesting) : UInt8(truncatingIfNeeded: rng.next()), at: position)
        case .insertToken:
            bytes.insert(contentsOf: Array(rng.pick(Self.vocabulary).utf8), at: position)
        case .deleteByte:
            guard !bytes.isEmpty else { return }
            bytes.remove(at: at)
        case .deleteRange:
            let end = min(bytes.count, position + 1 + rng.below(16))
            bytes.removeSubrange(min(position, end)..<end)
        case .spliceTail:
            // This input up to a point, another from a point on.
            guard let donor = donors.isEmpty ? nil : rng.pick(donors) else { return }
            bytes = Array(bytes[..<position]) + donor[rng.below(donor.count + 1)...]
        case .spliceInside:
            // A piece of another input inserted here.
            guard let donor = donors.isEmpty ? nil : rng.pick(donors), !donor.isEmpty else { return }
            let start = rng.below(donor.count)
            let end = min(donor.count, start + 1 + rng.below(40))
            bytes.insert(contentsOf: donor[start..<end], at: position)
        case .repeatChunk:
            // A piece repeated: a few times, or enough to cross a limit.
            guard !bytes.isEmpty else { return }
            let end = min(bytes.count, at + 1 + rng.below(24))
            let piece = Array(bytes[at..<end])
            let times = rng.chance(85) ? 2 + rng.below(6) : 100 + rng.below(1500)
            bytes.insert(contentsOf: Array([[UInt8]](repeating: piece, count: times).joined()), at: end)
        case .duplicateLine:
            let lines = lineStarts(bytes)
            let index = rng.below(lines.count)
            let start = lines[index]
            let end = index + 1 < lines.count ? lines[index + 1] : bytes.count
            bytes.insert(contentsOf: bytes[start..<end], at: start)
        case .insertLine:
            // After the request line, before the head's end or anywhere else.
            let lines = lineStarts(bytes)
            let line = lines.count > 1 ? lines[1 + rng.below(lines.count - 1)] : bytes.count
            let ending: [UInt8] = rng.chance(85) ? [13, 10] : [10]
            bytes.insert(contentsOf: Array(rng.pick(Self.framingLines).utf8) + ending, at: line)
        case .lineEnding:
            // CRLF to LF, LF to CRLF, LF to CR, an extra LF, or the CR or LF of a line
            // break replaced by another byte.
            let breaks = bytes.indices.filter { bytes[$0] == 10 }
            guard !breaks.isEmpty else { return }
            let index = rng.pick(breaks)
            switch rng.below(5) {
            case 0 where index > 0 && bytes[index - 1] == 13: bytes.remove(at: index - 1)
            case 1: bytes.insert(13, at: index)
            case 2: bytes[index] = 13
            case 3: bytes[index > 0 && bytes[index - 1] == 13 && rng.chance(50) ? index - 1 : index] = rng.pick(Self.interesting)
            default: bytes.insert(10, at: index)
            }
        case .changeNumber:
            // A run of (hex) digits becomes another number: 0, huge, padded, signed.
            let digits = bytes.indices.filter { ASCIIDigits.hex.contains(bytes[$0]) }
            guard !digits.isEmpty else { return }
            var start = rng.pick(digits)
            while start > 0 && ASCIIDigits.hex.contains(bytes[start - 1]) { start -= 1 }
            var end = start
            while end < bytes.count && ASCIIDigits.hex.contains(bytes[end]) { end += 1 }
            let replacement = rng.pick([
                "0", "1", "00000000000000000000003", "18446744073709551616", "9223372036854775807",
                "7fffffffffffffff", "8000000000000000", "ffffffffffffffffff", "-1", "+1", "1e3", "0x10", " 5", "5 ",
                String(rng.below(70_000)), String(rng.below(4096), radix: 16),
            ])
            bytes.replaceSubrange(start..<end, with: Array(replacement.utf8))
        case .flipCase:
            let letters = bytes.indices.filter { (bytes[$0] | 0x20) >= 0x61 && (bytes[$0] | 0x20) <= 0x7A }
            guard !letters.isEmpty else { return }
            bytes[rng.pick(letters)] ^= 0x20
        case .addWhitespace:
            // Before a colon, after one, at a line's start or end, between request-line parts.
            let spots = bytes.indices.filter { [0x3A, 0x20, 0x0D, 0x0A].contains(bytes[$0]) }
            let spot = spots.isEmpty ? position : rng.pick(spots) + rng.below(2)
            bytes.insert(contentsOf: rng.pick([[0x20], [0x09], [0x20, 0x20], [0x09, 0x20], [0x0B], [0x0C]]), at: min(spot, bytes.count))
        case .truncate:
            bytes.removeSubrange(position...)
        }
    }
}

/// Byte sets the mutator needs.
enum ASCIIDigits {
    static let hex: Set<UInt8> = Set(Array("0123456789abcdefABCDEF".utf8))
}
