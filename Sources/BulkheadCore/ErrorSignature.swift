/// The identity of an error across versions: chunk name plus message, with line
/// numbers and addresses taken out, so a runtime whose lines moved does not make
/// old errors look new.
public enum ErrorSignature {
    /// Normalises a Lua error message such as
    /// `runtime.lua:42: attempt to index a nil value (field 'execute')` into
    /// `runtime.lua: attempt to index a nil value (field 'execute')`.
    ///
    /// Removed: `:LINE:` after a chunk name, `0x…` addresses, and `line N` references
    /// inside `[string "…"]:N:` forms; the result is capped at 256 bytes.
    public static func normalize(_ message: String) -> String {
        var output: [UInt8] = []
        let bytes = Array(message.utf8.prefix(1024))
        output.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            // ":123:" → ":" (a line number between colons).
            if byte == UInt8(ascii: ":"), index + 1 < bytes.count, isDigit(bytes[index + 1]) {
                var end = index + 1
                while end < bytes.count, isDigit(bytes[end]) { end += 1 }
                if end < bytes.count, bytes[end] == UInt8(ascii: ":") {
                    output.append(UInt8(ascii: ":"))
                    index = end + 1
                    continue
                }
            }
            // "0x55d0c0ffee" → "0x?" (addresses differ per process).
            if byte == UInt8(ascii: "0"), index + 2 < bytes.count,
               bytes[index + 1] == UInt8(ascii: "x") || bytes[index + 1] == UInt8(ascii: "X"),
               isHexDigit(bytes[index + 2]) {
                var end = index + 2
                while end < bytes.count, isHexDigit(bytes[end]) { end += 1 }
                output.append(contentsOf: "0x?".utf8)
                index = end
                continue
            }
            output.append(byte)
            index += 1
        }
        return String(decoding: output.prefix(256), as: UTF8.self)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
    private static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte >= 0x61 && byte <= 0x66) || (byte >= 0x41 && byte <= 0x46)
    }
}
