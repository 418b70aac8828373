#if canImport(Glibc)
import Glibc
#endif
import CBulkheadPosix
import Dispatch
import Synchronization
import Testing
@testable import Worker

/// The worker's event loop on its own thread, with real descriptors (socket pairs).
@Suite("WorkerLoop")
struct WorkerLoopTests {
    /// Collects what a watched socket delivers; answers each read by echoing it.
    final class Echo: LoopHandler, @unchecked Sendable {
        let fd: Int32
        let loop: WorkerLoop
        let received = Mutex<[UInt8]>([])
        let closed = DispatchSemaphore(value: 0)

        init(fd: Int32, loop: WorkerLoop) {
            self.fd = fd
            self.loop = loop
        }

        func ready(_ events: UInt32) {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(fd, &chunk, chunk.count)
            if count <= 0 {
                loop.forget(fd)
                close(fd)
                closed.signal()
                return
            }
            received.withLock { $0 += chunk[0..<count] }
            _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, count) }
        }
    }

    static func socketPair() throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    static func readAll(_ fd: Int32, count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while result.count < count {
            let got = read(fd, &chunk, chunk.count)
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { break }
            result += chunk[0..<got]
        }
        return result
    }

    @Test("execute and submit run on the loop thread, in order")
    func tasks() throws {
        let loop = try WorkerLoop()
        loop.start(name: "test-loop")
        #expect(!loop.inLoop)
        let order = Mutex<[Int]>([])
        for index in 0..<1000 {
            loop.execute {
                precondition(loop.inLoop)
                order.withLock { $0.append(index) }
            }
        }
        let onLoop = loop.submit { loop.inLoop }
        #expect(onLoop)
        #expect(order.withLock { $0 } == Array(0..<1000), "submit runs after the tasks before it")
    }

    @Test("a watched descriptor's handler is called while bytes wait; forget stops it")
    func watchEchoForget() throws {
        let loop = try WorkerLoop()
        loop.start(name: "test-loop")
        let (ours, theirs) = try Self.socketPair()
        defer { close(ours) }
        let echo = Echo(fd: theirs, loop: loop)
        let watched = loop.submit { () -> Bool in
            (try? loop.watch(theirs, events: BH_EVENT_READ, handler: echo)) != nil
        }
        #expect(watched)
        let message = Array("hello, loop".utf8)
        _ = message.withUnsafeBytes { write(ours, $0.baseAddress, $0.count) }
        #expect(Self.readAll(ours, count: message.count) == message)
        // The peer closes: the handler sees end of input, forgets and closes.
        shutdown(ours, Int32(SHUT_WR))
        #expect(echo.closed.wait(timeout: .now() + 10) == .success)
        #expect(echo.received.withLock { $0 } == message)
    }

    @Test("timers run in deadline order, cancelled ones never, repeated ones again")
    func timers() throws {
        let loop = try WorkerLoop()
        loop.start(name: "test-loop")
        let fired = Mutex<[String]>([])
        let done = DispatchSemaphore(value: 0)
        let repeats = Mutex(0)
        loop.execute {
            loop.schedule(in: 30_000_000) { fired.withLock { $0.append("30ms") } }
            loop.schedule(in: 10_000_000) { fired.withLock { $0.append("10ms") } }
            let cancelled = loop.schedule(in: 20_000_000) { fired.withLock { $0.append("cancelled") } }
            loop.schedule(in: 15_000_000) { loop.cancel(cancelled) }
            loop.scheduleRepeated(every: 5_000_000) { repeats.withLock { $0 += 1 } }
            loop.schedule(in: 60_000_000) { done.signal() }
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(fired.withLock { $0 } == ["10ms", "30ms"])
        #expect(repeats.withLock { $0 } >= 3, "a 5 ms repeat ran \(repeats.withLock { $0 }) times in 60 ms")
    }

    @Test("the end-of-turn hook runs after the events of a turn")
    func endOfTurn() throws {
        let loop = try WorkerLoop()
        let turns = Mutex(0)
        loop.endOfTurn = { turns.withLock { $0 += 1 } }
        loop.start(name: "test-loop")
        for _ in 0..<5 {
            _ = loop.submit { 0 }
        }
        #expect(turns.withLock { $0 } >= 1)
    }
}
