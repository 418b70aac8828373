/// The body of one connection's thread: one request at a time on a kept-alive
/// connection, every outcome recorded, a new connection after any failure.
///
/// A failed request is never retried: the next request is simply the next one, so
/// every failure the server causes shows in the counts.
struct ConnectionLoop: Sendable {
    let control: RunControl
    let target: PreparedTarget
    let connection: LoadConnection
    /// Nanoseconds.
    let connectTimeout: UInt64
    /// Nanoseconds.
    let readTimeout: UInt64
    /// Nanoseconds.
    let reconnectDelay: UInt64
    /// Nanoseconds between request starts, if paced.
    let interval: UInt64?

    /// What one request ended with, and what it saw on the way.
    private struct Result {
        var outcome: Outcome
        var detail: String? = nil
        var latency: UInt64? = nil
        var worker: String? = nil
        var pool: String? = nil
        var keepOpen = false
    }

    /// Size of each `recv`.
    private static let receiveSize = 16 * 1024

    /// Runs until the run's bound or stop; returns when this connection's last
    /// request has its outcome.
    func run() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.receiveSize, alignment: 1)
        defer { buffer.deallocate() }
        var socket: ClientSocket?
        var nextStart = control.start
        while true {
            if let interval {
                if control.sleep(until: nextStart) { break }
                // Not `nextStart + interval` alone: after a slow response the
                // connection must not burst to catch up.
                nextStart = max(nextStart &+ interval, MonotonicClock.now())
            }
            guard control.claim() else { break }
            connection.tally.withLock { $0.attempts += 1 }

            var reused = false
            if let open = socket {
                // A server may close a kept-alive connection while it is idle (a
                // drained or killed worker does). No request is on it, so nothing
                // is lost: count it, and send this request on a new connection,
                // as any HTTP client would. A close that races with the send below
                // is still counted as that request's failure.
                let state = open.idleState()
                if state == .open {
                    reused = true
                } else {
                    socket = nil
                    connection.tally.withLock {
                        $0.idleClosed += 1
                        $0.details.add(state == .closed ? "idle: closed by server" : "idle: unsolicited bytes from server")
                    }
                }
            }
            let open: ClientSocket
            if let existing = socket {
                open = existing
            } else {
                do throws(SocketFailure) {
                    open = try ClientSocket.connect(to: target.address, timeout: connectTimeout)
                    socket = open
                    connection.tally.withLock { $0.connectionsOpened += 1 }
                } catch {
                    record(Result(outcome: .failure(.connect), detail: error.detail))
                    if control.sleep(until: MonotonicClock.now() &+ reconnectDelay) { break }
                    continue
                }
            }
            let result = exchange(on: open, reused: reused, buffer: buffer)
            record(result)
            if !result.keepOpen { socket = nil }
        }
    }

    /// Sends the request and reads one whole response.
    private func exchange(on socket: ClientSocket, reused: Bool, buffer: UnsafeMutableRawBufferPointer) -> Result {
        let began = MonotonicClock.now()
        let deadline = began &+ readTimeout
        connection.tally.withLock { $0.sent += 1 }
        var received = 0
        do throws(SocketFailure) {
            try socket.send(target.request, deadline: deadline)
            var parser = HTTPResponseParser(requestWasHead: target.isHead)
            while true {
                let count = try socket.receive(into: buffer, deadline: deadline)
                if count == 0 {
                    if let response = parser.endOfStream() {
                        return classify(response, latency: MonotonicClock.now() &- began)
                    }
                    let when = received == 0 ? "before any response byte" : "after \(received) response bytes"
                    return Result(outcome: .failure(.eof), detail: "closed \(when)" + (reused ? " (reused connection)" : ""))
                }
                received += count
                switch parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) {
                case .needMore:
                    continue
                case .invalid(let reason):
                    return Result(outcome: .failure(.badResponse), detail: reason)
                case .complete(let response, let excess):
                    // One request, one response: anything more is the server's bug,
                    // and it would corrupt the next exchange on this connection.
                    if excess > 0 {
                        return Result(outcome: .failure(.badResponse), detail: "\(excess) bytes after the response")
                    }
                    return classify(response, latency: MonotonicClock.now() &- began)
                }
            }
        } catch {
            var detail = error.detail
            if error.kind != .timeout {
                detail += received == 0 ? " before any response byte" : " after \(received) response bytes"
                if reused { detail += " (reused connection)" }
            } else if received > 0 {
                detail += " (\(received) response bytes by then)"
            }
            return Result(outcome: .failure(error.kind), detail: detail)
        }
    }

    /// Sorts a complete response into ok, a status, or a mismatch.
    private func classify(_ response: HTTPResponse, latency: UInt64) -> Result {
        var result = Result(
            outcome: .ok,
            latency: latency,
            worker: response.header("x-bulkhead-worker"),
            pool: response.header("x-bulkhead-pool"),
            keepOpen: response.keepAlive
        )
        guard (200...299).contains(response.status) else {
            result.outcome = .status(response.status, errorKind: response.header("x-bulkhead-error"))
            return result
        }
        if let expected = target.target.expectedPool, result.pool != expected {
            result.outcome = .failure(.mismatch)
            result.detail = "x-bulkhead-pool \(result.pool.map { "'\($0)'" } ?? "missing"), expected '\(expected)'"
        } else if let expected = target.expectedBody, !Self.contains(response.body, expected) {
            result.outcome = .failure(.mismatch)
            result.detail = "body without '\(target.target.expectedBodySubstring ?? "")'"
        }
        return result
    }

    /// Records a result in this connection's counts.
    private func record(_ result: Result) {
        let bucket = control.bucket(at: MonotonicClock.now())
        connection.tally.withLock { tally in
            tally.record(result.outcome, bucket: bucket)
            if let latency = result.latency { tally.latency.record(microseconds: latency / 1000) }
            if let worker = result.worker { tally.workers.add(worker) }
            if let pool = result.pool { tally.pools.add(pool) }
            if let detail = result.detail, case .failure(let kind) = result.outcome {
                tally.details.add("\(kind.rawValue): \(detail)")
            }
        }
    }

    /// Whether `needle` occurs in `haystack`.
    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count)
        where haystack[start] == needle[0] && haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return true
        }
        return false
    }
}
