#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

@testable import Supervisor

/// The supervisor's side of the control handshake against a worker that answers
/// wrongly: each answer is refused with an error that says why, and none crashes.
@Suite struct HandshakeTests {
    /// Runs the supervisor's handshake against a peer that reads the hello and then
    /// sends `answer` (raw bytes, framing included) and closes.
    static func handshake(answer: [UInt8]) throws -> Result<WorkerIdentity, any Error> {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw SystemError("socketpair") }
        let peer = fds[1]
        // The peer's thread owns its descriptor and closes it; the test waits for it,
        // so no descriptor number is closed while a parallel test may reuse it.
        let finished = DispatchSemaphore(value: 0)
        let worker = Thread {
            defer {
                close(peer)
                finished.signal()
            }
            Sockets.setTimeouts(peer, seconds: 5)
            var header = [UInt8](repeating: 0, count: 4)
            _ = recv(peer, &header, 4, Int32(MSG_WAITALL))
            let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
            var hello = [UInt8](repeating: 0, count: length)
            _ = recv(peer, &hello, length, Int32(MSG_WAITALL))
            _ = answer.withUnsafeBytes { send(peer, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            shutdown(peer, Int32(SHUT_WR))
        }
        worker.start()
        let connection = FrameConnection(fd: fds[0])
        let result: Result<WorkerIdentity, any Error>
        do {
            result = .success(try Supervisor.handshake(connection, wantListener: false).0)
        } catch {
            result = .failure(error)
        }
        finished.wait()
        return result
    }

    static func frame(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        let count = payload.count
        return [UInt8(count >> 24 & 0xff), UInt8(count >> 16 & 0xff), UInt8(count >> 8 & 0xff), UInt8(count & 0xff)] + payload
    }

    static func identity(protocolVersion: Int) -> String {
        var identity = WorkerIdentity(
            pid: 4242, pool: "free", slot: 0, instance: 1, versions: ArtifactVersions(), startedAt: 0, draining: false)
        identity.protocolVersion = protocolVersion
        return String(decoding: ControlCodec.encode(WorkerMessage.hello(identity)), as: UTF8.self)
    }

    @Test func aWorkerOfTheSameProtocolIsAccepted() throws {
        let result = try Self.handshake(answer: Self.frame(Self.identity(protocolVersion: controlProtocolVersion)))
        #expect((try? result.get())?.pid == 4242)
    }

    @Test(arguments: [0, 2, 99, -1])
    func aWorkerOfAnotherProtocolIsRefused(version: Int) throws {
        let result = try Self.handshake(answer: Self.frame(Self.identity(protocolVersion: version)))
        guard case .failure(let error) = result else {
            Issue.record("a worker speaking protocol \(version) was accepted")
            return
        }
        #expect("\(error)".contains("worker 4242 speaks control protocol \(version), not \(controlProtocolVersion)"), "\(error)")
    }

    @Test(arguments: [
        ("not JSON", frame("garbage")),
        ("another message than hello", frame("{\"ready\":{}}")),
        ("an unknown message", frame("{\"hullo\":{\"_0\":{}}}")),
        ("an oversized length prefix", [0xff, 0xff, 0xff, 0xff, 0x7b]),
        ("a frame cut short", Array(frame("{\"ready\":{}}").prefix(8))),
        ("nothing", []),
    ] as [(String, [UInt8])])
    func aBrokenAnswerIsRefused(what: String, answer: [UInt8]) throws {
        let result = try Self.handshake(answer: answer)
        guard case .failure(let error) = result else {
            Issue.record("\(what) was accepted as a handshake")
            return
        }
        print("\(what): \(error)")
        let text = "\(error)"
        #expect(text.contains("handshake") || text.contains("control frame"), "\(what): \(text)")
    }
}
