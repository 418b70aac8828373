#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing

@testable import BulkheadCore

/// The control channel's framing and decoding faced with a peer that sends garbage:
/// every malformed input is refused with a reason, nothing half-read is delivered, and
/// nothing crashes the reader.
@Suite struct FrameConnectionTests {
    /// What a started connection saw.
    final class Observed: Sendable {
        let frames = Mutex<[[UInt8]]>([])
        let closed = Mutex(false)

        func waitForClose(timeout: Double = 5) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if closed.withLock({ $0 }) { return true }
                usleep(2_000)
            }
            return false
        }
    }

    /// A started connection on one end of a socket pair; the other end is raw.
    static func pair() throws -> (connection: FrameConnection, peer: Int32, observed: Observed) {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw SystemError("socketpair") }
        let connection = FrameConnection(fd: fds[0])
        let observed = Observed()
        connection.start(
            name: "test",
            onFrame: { frame in observed.frames.withLock { $0.append(frame) } },
            onClose: { observed.closed.withLock { $0 = true } })
        return (connection, fds[1], observed)
    }

    static func frame(_ payload: [UInt8]) -> [UInt8] {
        let count = payload.count
        return [UInt8(count >> 24 & 0xff), UInt8(count >> 16 & 0xff), UInt8(count >> 8 & 0xff), UInt8(count & 0xff)] + payload
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }
            offset += written
        }
    }

    /// Whether the peer sees the connection closed (EOF) within a second.
    static func peerSeesClose(_ fd: Int32) -> Bool {
        Sockets.setReceiveTimeout(fd, seconds: 1)
        var byte: UInt8 = 0
        var count = recv(fd, &byte, 1, 0)
        while count < 0 && errno == EINTR {  // A signal to this thread, not the peer.
            count = recv(fd, &byte, 1, 0)
        }
        return count == 0
    }

    // MARK: Framing

    @Test func wellFormedFramesAreDeliveredWhole() throws {
        let (connection, peer, observed) = try Self.pair()
        defer { close(peer); connection.close() }
        let payload = ControlCodec.encode(WorkerMessage.ready)
        // Two frames in one write, then one split across writes.
        Self.write(peer, Self.frame(payload) + Self.frame(payload))
        let third = Self.frame(payload)
        Self.write(peer, Array(third.prefix(2)))
        usleep(20_000)
        Self.write(peer, Array(third.dropFirst(2)))
        let delivered = waitFor(timeout: 5) { observed.frames.withLock { $0.count } == 3 }
        #expect(delivered != nil)
        #expect(observed.frames.withLock { $0 }.allSatisfy { ControlCodec.decode(WorkerMessage.self, from: $0) == .ready })
        #expect(connection.protocolViolation == nil)
    }

    @Test(arguments: [UInt32(FrameConnection.maxFrameBytes + 1), 0x7fff_ffff, 0xffff_ffff])
    func anOversizedLengthPrefixClosesTheConnection(length: UInt32) throws {
        let (connection, peer, observed) = try Self.pair()
        defer { close(peer) }
        // A good frame first: it is delivered; nothing after the bad prefix is.
        let good = Self.frame(ControlCodec.encode(WorkerMessage.ready))
        let prefix = [UInt8(length >> 24 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
        Self.write(peer, good + prefix + Array(repeating: 0x41, count: 64) + good)
        #expect(observed.waitForClose(), "the reader stops at once, without waiting for \(length) bytes")
        #expect(observed.frames.withLock { $0.count } == 1)
        #expect(connection.protocolViolation == "a control frame announced \(length) bytes, over the \(FrameConnection.maxFrameBytes)-byte limit")
        #expect(connection.isClosed)
        #expect(Self.peerSeesClose(peer), "the sender is cut off")
    }

    @Test func aFrameCutShortIsNeverDelivered() throws {
        let (connection, peer, observed) = try Self.pair()
        let whole = Self.frame(ControlCodec.encode(WorkerMessage.log(customer: "acme", script: "s", line: "a line")))
        Self.write(peer, Array(whole.prefix(whole.count - 5)))
        usleep(50_000)
        close(peer)
        #expect(observed.waitForClose())
        #expect(observed.frames.withLock { $0.isEmpty })
        #expect(connection.protocolViolation?.contains("in the middle of a frame (\(whole.count - 5) bytes of it arrived)") == true,
                "\(connection.protocolViolation ?? "no reason")")
    }

    @Test func aCleanCloseIsNoViolation() throws {
        let (connection, peer, observed) = try Self.pair()
        Self.write(peer, Self.frame(ControlCodec.encode(WorkerMessage.ready)))
        _ = waitFor(timeout: 5) { observed.frames.withLock { $0.count } == 1 }
        close(peer)
        #expect(observed.waitForClose())
        #expect(connection.protocolViolation == nil)
    }

    @Test func readFrameNowRefusesAnOversizedPrefix() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let connection = FrameConnection(fd: fds[0])
        defer { close(fds[1]) }
        Sockets.setTimeouts(fds[0], seconds: 2)
        Self.write(fds[1], [0xff, 0xff, 0xff, 0xff, 0x00])
        #expect {
            _ = try connection.readFrameNow()
        } throws: { error in
            (error as? SystemError)?.code == EMSGSIZE && "\(error)".contains("control frame of 4294967295 bytes")
        }
    }

    @Test func readFrameNowRefusesATruncatedFrame() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let connection = FrameConnection(fd: fds[0])
        Sockets.setTimeouts(fds[0], seconds: 2)
        Self.write(fds[1], [0, 0, 0, 50] + Array("{\"ready\"".utf8))
        close(fds[1])
        #expect {
            _ = try connection.readFrameNow()
        } throws: { error in
            (error as? SystemError)?.code == ECONNRESET
        }
    }

    // MARK: Decoding

    /// Frames that arrive whole but are not a message the receiver knows: the decoder
    /// refuses each (the caller then replaces the sender) and never crashes.
    @Test(arguments: [
        "",
        "not json at all",
        "\u{0}\u{ff}{",
        "{}",
        "[]",
        "null",
        "{\"launchMissiles\":{\"_0\":1}}",
        "{\"hello\":{}}",
        "{\"hello\":{\"_0\":{\"pid\":\"one\"}}}",
        "{\"heartbeat\":{\"_0\":{\"requests\":\"many\"}}}",
        "{\"heartbeat\":{\"_0\":{\"requests\":1e400}}}",
        "{\"log\":{\"customer\":\"a\",\"script\":\"s\"}}",
        "{\"drain\":{}}",
        // Two messages in one: ambiguous. (A key no message has is ignored, as Codable
        // does, so {"ready":{},"drain":{}} is a ready.)
        "{\"ready\":{},\"log\":{\"customer\":\"a\",\"script\":\"s\",\"line\":\"x\"}}",
        String(repeating: "[", count: 200_000),
        String(repeating: "{\"a\":", count: 100_000),
    ])
    func malformedMessagesAreRefused(text: String) {
        #expect(ControlCodec.decode(WorkerMessage.self, from: Array(text.utf8)) == nil, "\(text.prefix(60))")
    }

    @Test func malformedOrdersAreRefusedByTheWorkerSide() {
        for text in ["{\"launchMissiles\":{}}", "{\"configure\":{\"cohort\":{\"name\":1}}}", "{\"ready\":{}}",
                     "{\"hello\":{\"protocolVersion\":\"1\",\"supervisorPID\":1,\"wantListener\":false}}"] {
            #expect(ControlCodec.decode(SupervisorMessage.self, from: Array(text.utf8)) == nil, "\(text)")
        }
        // And what a supervisor really sends decodes, so the refusals above mean something.
        let hello = ControlCodec.encode(SupervisorMessage.hello(protocolVersion: 1, supervisorPID: 7, wantListener: false))
        #expect(ControlCodec.decode(SupervisorMessage.self, from: hello) == .hello(protocolVersion: 1, supervisorPID: 7, wantListener: false))
    }
}

/// Waits for `condition`, polling; returns the seconds it took, or nil on timeout.
private func waitFor(timeout: Double, _ condition: () -> Bool) -> Double? {
    let start = Date()
    while Date().timeIntervalSince(start) < timeout {
        if condition() { return Date().timeIntervalSince(start) }
        usleep(2_000)
    }
    return nil
}
