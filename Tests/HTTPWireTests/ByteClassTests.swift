import HTTPWire
import Testing

@Suite("Byte classes")
struct ByteClassTests {
    static let tchars = Set(Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))
    static let hostBytes = Set(Array("-._~!$&'()*+,;=%:[]0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))

    @Test("a header name accepts exactly the tchars, wherever the byte is")
    func headerNameBytes() {
        for position in [0, 3, 7, 8, 12, 15] {
            for byte in UInt8(0)...UInt8(255) where byte != UInt8(ascii: ":") && byte != UInt8(ascii: "\n") {
                var name = Array("Abcdefghijklmnop".utf8)
                name[position] = byte
                let input = Array(text: "GET / HTTP/1.1\r\nHost: h\r\n") + name + Array(text: ": v\r\n\r\n")
                var violations: [String] = []
                let result = parseWhole(input, violations: &violations)
                if Self.tchars.contains(byte) {
                    #expect(result.request?.headers.last == [text(name), "v"], "byte \(byte) at \(position)")
                } else {
                    #expect(result.error != nil, "byte \(byte) at \(position)")
                }
            }
        }
    }

    @Test("a Host value accepts exactly host bytes")
    func hostBytes() {
        for byte in UInt8(0)...UInt8(255) where byte != UInt8(ascii: "\n") {
            let input = Array(text: "GET / HTTP/1.1\r\nHost: a") + [byte] + Array(text: "b\r\n\r\n")
            var violations: [String] = []
            let result = parseWhole(input, violations: &violations)
            if Self.hostBytes.contains(byte) {
                #expect(result.request != nil, "byte \(byte)")
            } else {
                #expect(result.error != nil, "byte \(byte)")
            }
        }
    }

    @Test("a request-target accepts visible ASCII but #, wherever the byte is")
    func targetBytes() {
        for position in [1, 5, 7, 8, 9, 16, 20] {
            for byte in UInt8(0)...UInt8(255) where byte != UInt8(ascii: "\n") {
                var target = Array("/abcdefghijklmnopqrstu".utf8)
                target[position] = byte
                let input = Array(text: "GET ") + target + Array(text: " HTTP/1.1\r\nHost: h\r\n\r\n")
                var violations: [String] = []
                let result = parseWhole(input, violations: &violations)
                if byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "#") {
                    let expectedPath = text(target.prefix { $0 != UInt8(ascii: "?") })
                    #expect(result.request?.path == expectedPath, "byte \(byte) at \(position)")
                } else {
                    #expect(result.error != nil, "byte \(byte) at \(position)")
                }
            }
        }
    }

    @Test("a header value refuses control bytes but HTAB, wherever the byte is")
    func valueBytes() {
        for position in [1, 5, 7, 8, 9, 15] {
            for byte in UInt8(0)...UInt8(255) where byte != UInt8(ascii: "\n") {
                var value = Array("abcdefghijklmnopq".utf8)
                value[position] = byte
                let input = Array(text: "GET / HTTP/1.1\r\nHost: h\r\nX: ") + value + Array(text: "\r\n\r\n")
                var violations: [String] = []
                let result = parseWhole(input, violations: &violations)
                if byte == 0x09 || (byte >= 0x20 && byte != 0x7F) {
                    #expect(result.request?.bodyBytes == [], "byte \(byte) at \(position)")
                    #expect(result.request?.headers.last == ["X", text(value)], "byte \(byte) at \(position)")
                } else {
                    #expect(result.error != nil, "byte \(byte) at \(position)")
                }
            }
        }
    }
}
