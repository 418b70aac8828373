#if canImport(Glibc)
import Glibc
#endif

/// A growable run of bytes for the data plane: read into at its end, consumed from
/// its start. The loop keeps one for every read and one for every write, so a
/// request in the common case allocates nothing; a connection gets one of its own
/// only for what must outlive a read (an incomplete request, an unsent response).
///
/// Why not NIO's `ByteBuffer`: the loop's buffers are shared, owned by a class and
/// written from many places per request; a copy-on-write struct there pays an
/// exclusivity check and a uniqueness check on every write, which the SwiftNIO
/// worker's profile showed (`swift_beginAccess`, `isUniquelyReferenced`). This one
/// is a class with a pointer: nothing to check.
///
/// Confined to the worker's loop thread, like everything it is used by.
final class IOBuffer {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    /// The first unconsumed byte.
    private var start = 0
    /// One past the last byte.
    private var end = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        self.base = .allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit {
        base.deallocate()
    }

    /// How many bytes are held.
    var count: Int { end - start }

    var isEmpty: Bool { end == start }

    /// The bytes held; valid until the next call that changes the buffer.
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + start, count: end - start)
    }

    /// Drops everything.
    func clear() {
        start = 0
        end = 0
    }

    /// Drops everything and gives back the memory past `limit` bytes: one large
    /// response must not keep a large buffer for the life of the worker.
    func clear(keepingAtMost limit: Int) {
        clear()
        guard capacity > limit else { return }
        base.deallocate()
        capacity = max(limit, 64)
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    /// Drops the first `count` bytes.
    func consume(_ count: Int) {
        start += min(count, end - start)
        if start == end { clear() }
    }

    /// Room for at least `count` more bytes at the end, for a `read` to fill;
    /// `commit` says how many it did.
    func reserve(_ count: Int) -> UnsafeMutableRawBufferPointer {
        ensureRoom(count)
        return UnsafeMutableRawBufferPointer(start: base + end, count: capacity - end)
    }

    /// Counts `count` bytes written into the room `reserve` gave.
    func commit(_ count: Int) {
        end += count
    }

    @inline(__always)
    func append(_ source: UnsafeRawBufferPointer) {
        guard let from = source.baseAddress, !source.isEmpty else { return }
        ensureRoom(source.count)
        (base + end).copyMemory(from: from, byteCount: source.count)
        end += source.count
    }

    @inline(__always)
    func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    func append(string text: String) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Writes a non-negative integer in decimal.
    func appendDecimal(_ value: Int) {
        ensureRoom(20)
        var remaining = max(0, value)
        var digits = 0
        repeat {
            digits += 1
            remaining /= 10
        } while remaining > 0
        remaining = max(0, value)
        var index = end + digits
        repeat {
            index -= 1
            base.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + remaining % 10), toByteOffset: index, as: UInt8.self)
            remaining /= 10
        } while remaining > 0
        end += digits
    }

    /// Makes room for `count` more bytes: moves what is held to the front first,
    /// then grows.
    private func ensureRoom(_ count: Int) {
        if capacity - end >= count { return }
        if start > 0 {
            let held = end - start
            memmove(base, base + start, held)
            start = 0
            end = held
            if capacity - end >= count { return }
        }
        var grown = capacity * 2
        while grown - end < count { grown *= 2 }
        let larger = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
        larger.copyMemory(from: base, byteCount: end)
        base.deallocate()
        base = larger
        capacity = grown
    }
}
