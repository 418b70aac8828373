#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing

@testable import BulkheadCore

/// No accept loop ends on an error: shortages back off (10 ms doubling to 1 s) and
/// are logged once per episode; per-connection errors are retried at once.
@Suite struct AcceptRetryTests {
    @Test func shortagesBackOffDoublingToOneSecondAndReportOnce() {
        var retry = AcceptRetry(listener: "test")
        var waits: [Double] = []
        var reports: [String] = []
        for _ in 0..<10 {
            let (action, report) = retry.failed(code: EMFILE)
            guard case .wait(let seconds) = action else {
                Issue.record("EMFILE must back off, got \(action)")
                return
            }
            waits.append(seconds)
            if let report { reports.append(report) }
        }
        #expect(waits.map { Int(($0 * 1000).rounded()) } == [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000])
        #expect(reports.count == 1, "one line per episode: \(reports)")
        #expect(reports.first?.contains("Too many open files") == true)
        // The episode ends with the next accepted connection, said once.
        let recovered = retry.succeeded()
        #expect(recovered?.contains("10 failed tries") == true, "\(recovered ?? "nil")")
        #expect(retry.succeeded() == nil)
        // A new episode starts from the first delay and is reported again.
        let (again, report) = retry.failed(code: ENFILE)
        #expect(again == .wait(seconds: AcceptRetry.firstDelay))
        #expect(report != nil)
    }

    @Test func everyShortageAndUnexpectedErrorBacksOff() {
        for code in [EMFILE, ENFILE, ENOBUFS, ENOMEM, EBADF, EINVAL] {
            var retry = AcceptRetry(listener: "test")
            #expect(retry.failed(code: code).action == .wait(seconds: AcceptRetry.firstDelay), "errno \(code)")
        }
    }

    @Test func perConnectionErrorsRetryAtOnceWithoutAnEpisode() {
        var retry = AcceptRetry(listener: "test")
        for code in [EINTR, EAGAIN, ECONNABORTED, EPROTO, ENETUNREACH] {
            let (action, report) = retry.failed(code: code)
            #expect(action == .retryNow, "errno \(code)")
            #expect(report == nil)
        }
        #expect(!retry.isBackingOff)
        #expect(retry.succeeded() == nil)
    }

    /// A real socket whose accept fails (not yet listening: EINVAL) keeps the loop
    /// trying, with one log line, until it can accept; a stop ends it.
    @Test func acceptLoopOutlivesErrorsAndEndsOnlyOnStop() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0)
        let port = try Sockets.localPort(of: fd)
        Sockets.setReceiveTimeout(fd, seconds: 0.1)

        let lines = Mutex<[String]>([])
        let accepted = Mutex<Int32?>(nil)
        let finished = DispatchSemaphore(value: 0)
        let stop = Atomic<Bool>(false)
        let thread = Thread {
            var retry = AcceptRetry(listener: "test listener")
            let client = Sockets.acceptRetrying(fd, retry: &retry, log: { line in lines.withLock { $0.append(line) } },
                                                stopped: { stop.load(ordering: .relaxed) })
            accepted.withLock { $0 = client }
            // Once more, with nothing to accept: only the stop ends it.
            let none = Sockets.acceptRetrying(fd, retry: &retry, log: { line in lines.withLock { $0.append(line) } },
                                              stopped: { stop.load(ordering: .relaxed) })
            if let none { close(none) }
            finished.signal()
        }
        thread.start()
        // Let it fail for a while: it must neither return nor log each try. (Waits for
        // the first line rather than a fixed time: on a loaded machine the thread may
        // start late.)
        let firstLine = Date().addingTimeInterval(10)
        while lines.withLock({ $0.isEmpty }) && Date() < firstLine { usleep(10_000) }
        usleep(400_000)
        #expect(lines.withLock { $0.count } == 1, "\(lines.withLock { $0 })")
        try #require(listen(fd, 4) == 0)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        let deadline = Date().addingTimeInterval(10)
        while accepted.withLock({ $0 }) == nil && Date() < deadline { usleep(10_000) }
        let server = try #require(accepted.withLock { $0 }, "the loop accepts once it can")
        close(server)
        #expect(lines.withLock { $0.count } == 2, "one line when the episode began, one when it ended")
        #expect(finished.wait(timeout: .now() + 0.5) == .timedOut, "with nothing to accept the loop goes on")
        stop.store(true, ordering: .relaxed)
        #expect(finished.wait(timeout: .now() + 5) == .success, "a stop ends it")
    }
}
