import BulkheadCore
import Testing

@Suite struct ControlCharactersTests {
    @Test func escapesWhatCouldForgeALineOrDriveATerminal() {
        #expect(ControlCharacters.escaped("a\u{1B}[2Jb") == "a\\u{1B}[2Jb")
        #expect(ControlCharacters.escaped("line\r\nFORGED") == "line\\r\\nFORGED")
        #expect(ControlCharacters.escaped("nul\u{0}cut") == "nul\\0cut")
        #expect(ControlCharacters.escaped("\u{7F}\u{9B}31m") == "\\u{7F}\\u{9B}31m")
        #expect(ControlCharacters.escaped("a\u{2028}b\u{2029}c") == "a\\u{2028}b\\u{2029}c")
        #expect(ControlCharacters.escaped("\u{1}\u{1F}") == "\\u{1}\\u{1F}")
    }

    @Test func keepsPrintableTextAndTabs() {
        for text in ["", "plain", "tab\there", "café ✓ 日本", "back\\slash", "{\"json\": 1}"] {
            #expect(ControlCharacters.escaped(text) == text)
        }
    }

    @Test func noControlCharacterSurvives() {
        let every = String(String.UnicodeScalarView((0...0xA0).compactMap(Unicode.Scalar.init)))
        let escaped = ControlCharacters.escaped(every)
        #expect(!escaped.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" })
        #expect(!escaped.unicodeScalars.contains { (0x7F...0x9F).contains($0.value) })
    }
}
