/// Text from outside the host (a script's error or log line, a worker's report) made
/// safe to print in a log or on an operator's terminal.
///
/// Why: an ESC can drive a terminal (clear the screen, hide text, set a title), a CR
/// or LF can forge a whole log line, and a NUL cuts a line short for many tools. Each
/// such character is shown as an escape instead (`\n`, `\r`, `\0`, `\u{1B}`); tabs
/// and everything printable, non-ASCII included, are kept as they are.
public enum ControlCharacters {
    /// `text` with every control character escaped, or `text` itself when it has none.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                result.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\0": result += "\\0"
            default: result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return result
    }

    /// C0 controls but tab, DEL, C1 controls, and the Unicode line and paragraph
    /// separators (which some viewers take as line ends).
    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09: false
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029: true
        default: false
        }
    }
}
