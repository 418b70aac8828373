#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// One end of the control channel: length-prefixed frames (4 bytes big-endian,
/// then JSON) over a connected Unix stream socket, both ways.
///
/// Reading happens on a thread of its own that hands every frame to a handler;
/// writing goes through a queue drained by another thread, so that a caller on a
/// hot path (a worker's event loop) never blocks on a slow peer. Heartbeats and
/// logs are sent as droppable: when the queue is full they are dropped, which
/// loses nothing because heartbeats carry cumulative counters.
public final class FrameConnection: @unchecked Sendable {
    /// Largest frame accepted; a peer sending more is cut off.
    public static let maxFrameBytes = 32 * 1024 * 1024
    /// Queued bytes beyond which droppable frames are dropped.
    public static let droppableQueueBytes = 1024 * 1024

    /// The socket.
    public let fd: Int32

    private struct Queue {
        var frames: [[UInt8]] = []
        var bytes = 0
        var closed = false
        var dropped = 0
    }

    private let queue = Mutex(Queue())
    private let condition = NSCondition()
    private let closedOnce = Atomic<Bool>(false)
    private let violation = Mutex<String?>(nil)

    /// Wraps a connected socket; the connection owns it from now on.
    public init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        Glibc.close(fd)
    }

    // MARK: Synchronous use, before `start`

    /// Writes one frame, blocking. For the handshake, before `start`.
    public func writeFrameNow(_ payload: [UInt8]) throws(SystemError) {
        var frame = Self.header(for: payload.count)
        frame.append(contentsOf: payload)
        try writeAll(frame)
    }

    /// Reads exactly one frame, blocking (use `Sockets.setTimeouts` for a bound).
    /// For the handshake: it reads no byte past the frame, so a descriptor sent
    /// right after it can still be received.
    public func readFrameNow() throws(SystemError) -> [UInt8] {
        let header = try readExactly(4)
        let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        guard length <= Self.maxFrameBytes else { throw SystemError("control frame of \(length) bytes", code: EMSGSIZE) }
        return try readExactly(length)
    }

    // MARK: Running

    /// Starts the reader and writer threads. `onFrame` runs on the reader thread for
    /// every frame; `onClose` runs once when the peer goes away or `close()` is called.
    public func start(
        name: String,
        onFrame: @escaping @Sendable ([UInt8]) -> Void,
        onClose: @escaping @Sendable () -> Void
    ) {
        let reader = Thread { [self] in
            self.readLoop(onFrame: onFrame)
            self.close()
            onClose()
        }
        reader.name = "\(name)-read"
        reader.start()
        let writer = Thread { [self] in self.writeLoop() }
        writer.name = "\(name)-write"
        writer.start()
    }

    /// Queues a frame. Returns false when the connection is closed, or when the
    /// frame is droppable and the queue is already full.
    @discardableResult
    public func send(_ payload: [UInt8], droppable: Bool = false) -> Bool {
        var frame = Self.header(for: payload.count)
        frame.append(contentsOf: payload)
        let queued = queue.withLock { state -> Bool in
            if state.closed { return false }
            if droppable && state.bytes > Self.droppableQueueBytes {
                state.dropped += 1
                return false
            }
            state.frames.append(frame)
            state.bytes += frame.count
            return true
        }
        if queued {
            condition.lock()
            condition.signal()
            condition.unlock()
        }
        return queued
    }

    /// Frames dropped because the queue was full.
    public var droppedFrames: Int { queue.withLock { $0.dropped } }

    /// Whether the connection has been closed.
    public var isClosed: Bool { closedOnce.load(ordering: .acquiring) }

    /// Why the reader stopped when the peer broke the framing (a length over
    /// `maxFrameBytes`, or a close in the middle of a frame); nil after a clean close.
    /// Set before `onClose` runs. A peer that breaks the framing cannot be trusted to
    /// be in sync again: the connection is closed, never resynchronised.
    public var protocolViolation: String? { violation.withLock { $0 } }

    /// Shuts the socket down: both threads end, `onClose` runs.
    public func close() {
        guard !closedOnce.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.withLock { $0.closed = true }
        shutdown(fd, Int32(SHUT_RDWR))
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    // MARK: Threads

    private func readLoop(onFrame: @Sendable ([UInt8]) -> Void) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 {
                if count == 0 && !buffer.isEmpty && !isClosed {
                    violation.withLock {
                        $0 = "the peer closed the connection in the middle of a frame (\(buffer.count) bytes of it arrived)"
                    }
                }
                return
            }
            buffer.append(contentsOf: chunk[0..<count])
            var start = 0
            while buffer.count - start >= 4 {
                let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16
                    | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
                guard length <= Self.maxFrameBytes else {
                    violation.withLock {
                        $0 = "a control frame announced \(length) bytes, over the \(Self.maxFrameBytes)-byte limit"
                    }
                    return
                }
                guard buffer.count - start - 4 >= length else { break }
                onFrame(Array(buffer[(start + 4)..<(start + 4 + length)]))
                start += 4 + length
            }
            if start > 0 { buffer.removeFirst(start) }
        }
    }

    private func writeLoop() {
        while true {
            condition.lock()
            var batch: [[UInt8]] = []
            var closed = false
            while true {
                (batch, closed) = queue.withLock { state in
                    let frames = state.frames
                    state.frames.removeAll(keepingCapacity: true)
                    state.bytes = 0
                    return (frames, state.closed)
                }
                if !batch.isEmpty || closed { break }
                condition.wait()
            }
            condition.unlock()
            if closed { return }
            var joined: [UInt8] = []
            for frame in batch { joined.append(contentsOf: frame) }
            do {
                try writeAll(joined)
            } catch {
                close()
                return
            }
        }
    }

    // MARK: Bytes

    private static func header(for length: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: length >> 24), UInt8(truncatingIfNeeded: length >> 16),
         UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
    }

    private func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw SystemError("write control frame")
            }
            offset += written
        }
    }

    private func readExactly(_ count: Int) throws(SystemError) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let received = result.withUnsafeMutableBytes { raw in
                recv(fd, raw.baseAddress! + offset, count - offset, 0)
            }
            if received < 0 {
                if errno == EINTR { continue }
                throw SystemError("read control frame")
            }
            if received == 0 { throw SystemError("read control frame", code: ECONNRESET) }
            offset += received
        }
        return result
    }
}

/// JSON coding of control messages.
public enum ControlCodec {
    /// Encodes a message; control messages always encode.
    public static func encode<Message: Encodable>(_ message: Message) -> [UInt8] {
        (try? Array(JSONEncoder().encode(message))) ?? []
    }

    /// Decodes a message, or nil for a malformed frame (which the caller reports).
    public static func decode<Message: Decodable>(_ type: Message.Type, from bytes: [UInt8]) -> Message? {
        try? JSONDecoder().decode(type, from: Data(bytes))
    }
}
