import Store
import Testing

@Suite struct SHA256HasherTests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
        (String(repeating: "a", count: 55), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"),
        (String(repeating: "a", count: 64), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"),
        ("h\u{e9}llo \u{2603}", "c3a3e84b30327c8e3f04a788d8b68da3fd94c22353c5a30e3fe6ca7ebde3ab3f"),
    ])
    func knownDigests(input: String, expected: String) {
        #expect(SHA256Hasher.hex(input) == expected)
    }

    @Test func aMillionBytes() {
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256Hasher.hex(input) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect(SHA256Hasher.digest(input).count == 32)
    }

    @Test func tokenHashes() {
        let hash = TokenHash.of(token: "bh_secret")
        #expect(TokenHash.isWellFormed(hash))
        #expect(hash == SHA256Hasher.hex("bh_secret"))
        #expect(!TokenHash.isWellFormed(hash.uppercased()))
        #expect(!TokenHash.isWellFormed(String(hash.dropLast())))
        #expect(!TokenHash.isWellFormed("bh_secret"))
    }

    @Test func constantTimeComparison() {
        let hash = TokenHash.of(token: "one")
        #expect(constantTimeEquals(hash, hash))
        #expect(!constantTimeEquals(hash, String(hash.dropLast()) + (hash.hasSuffix("0") ? "1" : "0")))
        #expect(!constantTimeEquals(hash, String(hash.dropLast())))
        #expect(!constantTimeEquals(hash, ""))
        #expect(constantTimeEquals("", ""))
    }
}
