// MARK: - Byte classes

/// The byte classes of RFC 9110 and RFC 9112 that the parser and the router test, as
/// constants and bit tests, so the hot loops read no table from memory and never
/// index outside the buffer they are given.
enum ASCII {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let comma: UInt8 = 0x2C
    static let dash: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let slash: UInt8 = 0x2F
    static let zero: UInt8 = 0x30
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let question: UInt8 = 0x3F
    static let leftBracket: UInt8 = 0x5B
    static let del: UInt8 = 0x7F

    /// Bit of `classes`: `tchar` (RFC 9110 §5.6.2): ``!#$%&'*+-.^_`|~``, digits, letters.
    static let tokenBit: UInt8 = 1
    /// Bit of `classes`: a byte of a Host value or an absolute-form authority (RFC 3986
    /// `host [":" port]` as a character set: unreserved, sub-delims, `%`, `:`, `[`,
    /// `]`). No `@`: userinfo is refused.
    static let hostBit: UInt8 = 2
    /// Bit of `classes`: a byte of a request-target: visible ASCII except `#` (a
    /// fragment is never sent, RFC 9112 §3.2). Spaces, controls, DEL and non-ASCII must
    /// be percent-encoded by the client.
    static let targetBit: UInt8 = 4

    /// The class bits of each byte value. A literal, so it is laid out at compile time
    /// (no lazy initialisation on the hot path); `HTTPWireTests` checks every entry
    /// against the RFC character lists.
    static let classes: [UInt8] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0x0_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0x1_
        0, 7, 4, 1, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 4,  // 0x2_  !"#$%&'()*+,-./
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 4, 6, 4, 4,  // 0x3_ 0123456789:;<=>?
        4, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,  // 0x4_ @ABCDEFGHIJKLMNO
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 4, 6, 5, 7,  // 0x5_ PQRSTUVWXYZ[\]^_
        5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,  // 0x6_ `abcdefghijklmno
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 4, 5, 4, 7, 0,  // 0x7_ pqrstuvwxyz{|}~
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0x8_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0x9_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0xA_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0xB_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0xC_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0xD_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0xE_
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0xF_
    ]

    /// Whether `byte` has any of the class bits in `mask`.
    @inline(__always)
    static func hasClass(_ byte: UInt8, _ mask: UInt8) -> Bool {
        classes.withUnsafeBufferPointer { $0[Int(byte)] } & mask != 0
    }

    /// Whether `byte` is a `tchar`.
    @inline(__always)
    static func isTokenChar(_ byte: UInt8) -> Bool {
        hasClass(byte, tokenBit)
    }

    /// Whether `byte` may appear in a Host value.
    @inline(__always)
    static func isHostChar(_ byte: UInt8) -> Bool {
        hasClass(byte, hostBit)
    }

    /// Whether `byte` may appear in a request-target.
    @inline(__always)
    static func isTargetChar(_ byte: UInt8) -> Bool {
        hasClass(byte, targetBit)
    }

    /// Optional whitespace (RFC 9110 §5.6.3): SP or HTAB.
    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == space || byte == tab
    }

    /// `DIGIT`.
    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool {
        byte &- zero < 10
    }

    /// The value of a hexadecimal digit, or nil.
    @inline(__always)
    static func hexValue(_ byte: UInt8) -> Int? {
        if byte &- zero < 10 { return Int(byte &- zero) }
        let lower = byte | 0x20
        if lower &- 0x61 < 6 { return Int(lower &- 0x61) &+ 10 }
        return nil
    }

    /// `byte` with A–Z mapped to a–z.
    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- 0x41 < 26 ? byte | 0x20 : byte
    }

    // MARK: - Scanning

    /// The index of the first LF in `bytes[start..<end]`, or nil. `end` is clamped to the
    /// buffer. Looks at eight bytes at a time: the whole head goes through here once.
    @inline(__always)
    static func firstLF(in bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int? {
        let end = min(end, bytes.count)
        guard start >= 0, start < end, let base = bytes.baseAddress else { return nil }
        var index = start
        while end &- index >= 8 {
            // Classic "has a zero byte" test on (word XOR 0x0A…): the lowest flagged byte
            // is exact (a borrow can only create false flags above a real zero byte), and
            // the little-endian view makes the lowest byte the first in memory.
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            let x = word ^ 0x0A0A_0A0A_0A0A_0A0A
            let found = (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
            if found != 0 {
                return index &+ found.trailingZeroBitCount >> 3
            }
            index &+= 8
        }
        while index < end {
            if base.load(fromByteOffset: index, as: UInt8.self) == lf { return index }
            index &+= 1
        }
        return nil
    }

    /// The index of the first control byte (0x00–0x1F, HTAB included, or 0x7F) in
    /// `bytes[start..<end]`, or nil. Bytes 0x80 and up (obs-text) are not controls. In a
    /// field value the first one is normally the CR or LF that ends the line, so this
    /// both checks the value and finds its end in one pass.
    @inline(__always)
    static func firstControl(in bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int? {
        let end = min(end, bytes.count)
        guard start >= 0, start < end, let base = bytes.baseAddress else { return nil }
        var index = start
        while end &- index >= 8 {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            // Bytes below 0x20, and bytes equal to 0x7F. As in `firstLF`, the lowest flag
            // of each test is exact, so the lowest of both is the first control byte.
            let below = (word &- 0x2020_2020_2020_2020) & ~word
            let d = word ^ 0x7F7F_7F7F_7F7F_7F7F
            let delete = (d &- 0x0101_0101_0101_0101) & ~d
            let found = (below | delete) & 0x8080_8080_8080_8080
            if found != 0 {
                return index &+ found.trailingZeroBitCount >> 3
            }
            index &+= 8
        }
        while index < end {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            if byte < space || byte == del { return index }
            index &+= 1
        }
        return nil
    }

    /// Whether `bytes[start..<end]` holds a control byte other than HTAB: what a field
    /// value may not contain (RFC 9110 §5.5).
    @inline(__always)
    static func containsControl(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Bool {
        var index = start
        while let found = firstControl(in: bytes, from: index, to: end) {
            if bytes[found] != tab { return true }
            index = found &+ 1
        }
        return false
    }

    /// Scans a request-target from `start`: every byte up to the returned `end` has
    /// `targetBit`, and `end` is `limit` or the index of the first byte without it (a
    /// space, normally). Also finds the first `?` (`end` when none). Eight bytes at a
    /// time.
    @inline(__always)
    static func scanTarget(
        _ bytes: UnsafeRawBufferPointer, from start: Int, to limit: Int
    ) -> (end: Int, questionMark: Int) {
        let limit = min(limit, bytes.count)
        guard start >= 0, start < limit, let base = bytes.baseAddress else { return (max(start, 0), max(start, 0)) }
        var questionMark = -1
        var index = start
        while limit &- index >= 8 {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            // Bytes below 0x21, 0x7F and up, and `#`: each test's lowest flag is exact
            // (false flags only appear above a true one), so the lowest of all three is
            // the first byte that ends the target.
            let below = (word &- 0x2121_2121_2121_2121) & ~word
            let above = (word &+ 0x0101_0101_0101_0101) | word
            let h = word ^ 0x2323_2323_2323_2323
            let stop = (below | above | ((h &- 0x0101_0101_0101_0101) & ~h)) & 0x8080_8080_8080_8080
            if questionMark < 0 {
                let q = word ^ 0x3F3F_3F3F_3F3F_3F3F
                let mark = (q &- 0x0101_0101_0101_0101) & ~q & 0x8080_8080_8080_8080
                // A `?` counts only before the stop.
                if mark != 0 && (stop == 0 || mark.trailingZeroBitCount < stop.trailingZeroBitCount) {
                    questionMark = index &+ mark.trailingZeroBitCount >> 3
                }
            }
            if stop != 0 {
                let end = index &+ stop.trailingZeroBitCount >> 3
                return (end, questionMark < 0 ? end : questionMark)
            }
            index &+= 8
        }
        while index < limit {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            guard isTargetChar(byte) else { break }
            if byte == question && questionMark < 0 { questionMark = index }
            index &+= 1
        }
        return (index, questionMark < 0 ? index : questionMark)
    }

    /// The index of the first byte from `start` on that is not a `tchar` (the colon
    /// after a field name, normally), or `limit`. Letters, digits and `-` (nearly every
    /// name) go eight at a time; other token bytes through the class table.
    @inline(__always)
    static func scanToken(_ bytes: UnsafeRawBufferPointer, from start: Int, to limit: Int) -> Int {
        let limit = min(limit, bytes.count)
        guard start >= 0, start < limit, let base = bytes.baseAddress else { return max(start, 0) }
        var index = start
        while limit &- index >= 8 {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            // Per byte, on its low seven bits x (no carry can cross bytes): x + (0x80 - lo)
            // has the top bit when x >= lo, x + (0x7F - hi) when x > hi.
            let low7 = word & 0x7F7F_7F7F_7F7F_7F7F
            let folded = (word | 0x2020_2020_2020_2020) & 0x7F7F_7F7F_7F7F_7F7F
            let letter = (folded &+ 0x1F1F_1F1F_1F1F_1F1F) & ~(folded &+ 0x0505_0505_0505_0505)
            let digit = (low7 &+ 0x5050_5050_5050_5050) & ~(low7 &+ 0x4646_4646_4646_4646)
            let dash = ~((low7 ^ 0x2D2D_2D2D_2D2D_2D2D) &+ 0x7F7F_7F7F_7F7F_7F7F)
            let plain = (letter | digit | dash) & ~word & 0x8080_8080_8080_8080
            if plain == 0x8080_8080_8080_8080 {
                index &+= 8
                continue
            }
            index &+= (~plain & 0x8080_8080_8080_8080).trailingZeroBitCount >> 3
            break
        }
        while index < limit && isTokenChar(base.load(fromByteOffset: index, as: UInt8.self)) {
            index &+= 1
        }
        return index
    }

    /// Whether `bytes[start..<end]` contains a CR.
    static func containsCR(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Bool {
        let end = min(end, bytes.count)
        var index = max(start, 0)
        while index < end {
            if bytes[index] == cr { return true }
            index &+= 1
        }
        return false
    }

    /// Whether `bytes[range]`, lower-cased, equals `literal`. The literal must be made of
    /// lower-case letters, digits and `-`, and `bytes[range]` must hold no control
    /// bytes (true of a header name or a checked value): then setting bit 0x20 of each
    /// byte lower-cases letters and maps nothing else onto the literal's bytes (only
    /// controls 0x0D, 0x10–0x19 would), so a whole word compares at once.
    @inline(__always)
    static func equalsLowercased(
        _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString
    ) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard range.count == count, range.lowerBound >= 0, range.upperBound <= bytes.count,
              let base = bytes.baseAddress, literal.hasPointerRepresentation
        else { return false }
        let expected = UnsafeRawPointer(literal.utf8Start)
        var offset = 0
        while count &- offset >= 8 {
            let word = base.loadUnaligned(fromByteOffset: range.lowerBound &+ offset, as: UInt64.self)
            let want = expected.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            if word | 0x2020_2020_2020_2020 != want { return false }
            offset &+= 8
        }
        while offset < count {
            let byte = base.load(fromByteOffset: range.lowerBound &+ offset, as: UInt8.self)
            if byte | 0x20 != expected.load(fromByteOffset: offset, as: UInt8.self) { return false }
            offset &+= 1
        }
        return true
    }

    /// Whether `bytes[range]` equals `literal`, ASCII letters compared without case. For
    /// any literal; `equalsLowercased` is the fast one for the parser's own names.
    static func equalsIgnoringCase(
        _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString
    ) -> Bool {
        guard range.lowerBound >= 0, range.upperBound <= bytes.count,
              range.count == literal.utf8CodeUnitCount
        else { return false }
        return literal.withUTF8Buffer { expected in
            var index = 0
            while index < expected.count {
                if lowercased(bytes[range.lowerBound &+ index]) != lowercased(expected[index]) { return false }
                index &+= 1
            }
            return true
        }
    }

    /// Whether `bytes[range]` equals `literal` exactly.
    @inline(__always)
    static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.lowerBound >= 0, range.upperBound <= bytes.count,
              range.count == literal.utf8CodeUnitCount
        else { return false }
        return literal.withUTF8Buffer { expected in
            var index = 0
            while index < expected.count {
                if bytes[range.lowerBound &+ index] != expected[index] { return false }
                index &+= 1
            }
            return true
        }
    }

    /// `start + length`, or `limit` when that is smaller or the sum overflows.
    @inline(__always)
    static func clampedEnd(_ start: Int, plus length: Int, limit: Int) -> Int {
        let (sum, overflow) = start.addingReportingOverflow(max(length, 0))
        return overflow ? limit : min(sum, limit)
    }
}
