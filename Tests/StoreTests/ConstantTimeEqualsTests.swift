import Store
import Testing

/// `constantTimeEquals` gives the same answers as byte equality. (How it stays
/// constant-time is in its code: every byte pair is XORed into one accumulator, with
/// no branch or early exit on the bytes; only a length difference returns early, and
/// a token hash's length is public. Timing is not asserted here: on a shared machine
/// that would measure the machine.)
@Suite struct ConstantTimeEqualsTests {
    static let hash = TokenHash.of(token: "bht_0123456789abcdef0123456789abcdef01234567")

    @Test func equalBytesAreEqual() {
        #expect(constantTimeEquals(Self.hash, Self.hash))
        #expect(constantTimeEquals(Self.hash, String(Self.hash.map { $0 })))
        #expect(constantTimeEquals("", ""))
    }

    @Test(arguments: [0, 1, 31, 32, 62, 63])
    func oneDifferentByteAnywhereIsUnequal(position: Int) {
        var bytes = Array(Self.hash.utf8)
        bytes[position] = bytes[position] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        let other = String(decoding: bytes, as: UTF8.self)
        #expect(!constantTimeEquals(Self.hash, other))
        #expect(!constantTimeEquals(other, Self.hash))
    }

    @Test func everyBitCounts() {
        // A difference in any single bit of any byte is seen (no bits are masked off).
        let base = Array("abcdefgh".utf8)
        for index in base.indices {
            for bit in 0..<7 {
                var changed = base
                changed[index] ^= UInt8(1 << bit)
                #expect(!constantTimeEquals(String(decoding: base, as: UTF8.self), String(decoding: changed, as: UTF8.self)),
                        "byte \(index) bit \(bit)")
            }
        }
    }

    @Test func differentLengthsAreUnequal() {
        #expect(!constantTimeEquals(Self.hash, String(Self.hash.dropLast())))
        #expect(!constantTimeEquals(Self.hash, Self.hash + "0"))
        #expect(!constantTimeEquals("", Self.hash))
        #expect(!constantTimeEquals(Self.hash, ""))
    }

    @Test func comparesBytesNotCharacters() {
        // Swift's == calls these equal (canonical equivalence); a token is bytes.
        #expect("é" == "e\u{301}")
        #expect(!constantTimeEquals("é", "e\u{301}"))
        #expect(!constantTimeEquals(Self.hash, Self.hash.uppercased()))
    }
}
