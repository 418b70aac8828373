import Testing
@testable import Worker

@Suite("IOBuffer: the data plane's read and write buffers")
struct IOBufferTests {
    @Test("appends, consumes and keeps the bytes in order across growth and compaction")
    func appendConsumeGrow() {
        let buffer = IOBuffer(capacity: 8)
        var model: [UInt8] = []
        var next: UInt8 = 0
        // Appends of varied sizes with consumes in between: the buffer grows past
        // its capacity and moves its bytes to the front, and must agree with the
        // plain array at every step.
        for step in 0..<400 {
            let size = (step * 7) % 23
            let chunk = (0..<size).map { _ in
                next &+= 1
                return next
            }
            chunk.withUnsafeBytes { buffer.append($0) }
            model += chunk
            if step % 3 == 0 {
                let drop = min(model.count, (step * 5) % 31)
                buffer.consume(drop)
                model.removeFirst(drop)
            }
            #expect(buffer.count == model.count)
            #expect(Array(buffer.bytes) == model)
        }
    }

    @Test("reserve and commit: room for a read, counted only as filled")
    func reserveCommit() {
        let buffer = IOBuffer(capacity: 64)
        buffer.append("abc" as StaticString)
        let room = buffer.reserve(1000)
        #expect(room.count >= 1000)
        room.copyBytes(from: Array("defg".utf8))
        buffer.commit(4)
        #expect(Array(buffer.bytes) == Array("abcdefg".utf8))
    }

    @Test("decimals, strings and static strings")
    func text() {
        let buffer = IOBuffer(capacity: 4)
        for value in [0, 7, 10, 99, 100, 65_536, Int.max] {
            buffer.clear()
            buffer.appendDecimal(value)
            #expect(String(decoding: buffer.bytes, as: UTF8.self) == String(value))
        }
        buffer.clear()
        buffer.appendDecimal(-5)
        #expect(String(decoding: buffer.bytes, as: UTF8.self) == "0", "negative counts write 0")
        buffer.clear()
        buffer.append("content-length: " as StaticString)
        buffer.append(string: "é✓")
        buffer.append([0x21])
        #expect(String(decoding: buffer.bytes, as: UTF8.self) == "content-length: é✓!")
    }

    @Test("clear(keepingAtMost:) gives back a large buffer and the buffer still works")
    func shrink() {
        let buffer = IOBuffer(capacity: 16)
        buffer.append(UnsafeRawBufferPointer(start: nil, count: 0))
        let large = [UInt8](repeating: 0x61, count: 1 << 20)
        large.withUnsafeBytes { buffer.append($0) }
        #expect(buffer.count == 1 << 20)
        buffer.clear(keepingAtMost: 4096)
        #expect(buffer.isEmpty)
        #expect(buffer.reserve(1).count <= 4096, "the megabyte was given back")
        buffer.append("ok" as StaticString)
        #expect(Array(buffer.bytes) == Array("ok".utf8))
    }
}
