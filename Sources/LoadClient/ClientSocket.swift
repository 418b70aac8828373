#if canImport(Glibc)
import Glibc
#endif

/// Why a socket operation failed, already sorted into the kind a report counts.
struct SocketFailure: Error {
    /// The report's name for the failure.
    var kind: FailureKind
    /// What happened, for the report's failure details (`"recv: Connection reset by peer"`).
    var detail: String
}

/// What a kept-alive connection looks like just before it is reused.
enum IdleState: Equatable {
    /// Nothing to read: the connection can carry the next request.
    case open
    /// The server closed or reset it while it was idle.
    case closed
    /// The server sent bytes nobody asked for.
    case unsolicitedData
}

/// One non-blocking TCP connection to a target, owned by one connection thread.
///
/// Every wait goes through `poll` with the request's deadline, so a silent server
/// costs exactly the read timeout and never blocks a thread for longer.
final class ClientSocket {
    private let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }

    /// Connects to `address`, failing with kind `connect` if it is refused or takes
    /// longer than `timeout` nanoseconds.
    static func connect(to address: sockaddr_in, timeout: UInt64) throws(SocketFailure) -> ClientSocket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let descriptor = socket(AF_INET, type, 0)
        guard descriptor >= 0 else {
            throw SocketFailure(kind: .connect, detail: "socket: \(errorText(errno))")
        }
        // From here on the socket closes itself if connecting fails.
        let connection = ClientSocket(descriptor: descriptor)
        var one: Int32 = 1
        // Requests are small single writes; Nagle would only add latency.
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        var target = address
        let result = withUnsafePointer(to: &target) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result == 0 { return connection }
        let code = errno
        guard code == EINPROGRESS || code == EINTR else {
            throw SocketFailure(kind: .connect, detail: errorText(code))
        }
        do {
            try connection.waitUntilReady(for: Int16(POLLOUT), deadline: MonotonicClock.now() &+ timeout)
        } catch {
            throw SocketFailure(kind: .connect, detail: error.kind == .timeout ? "not accepted in time" : error.detail)
        }
        var socketError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &socketError, &length) == 0 else {
            throw SocketFailure(kind: .connect, detail: "getsockopt: \(errorText(errno))")
        }
        guard socketError == 0 else {
            throw SocketFailure(kind: .connect, detail: errorText(socketError))
        }
        return connection
    }

    /// Writes all of `bytes` before `deadline`.
    func send(_ bytes: [UInt8], deadline: UInt64) throws(SocketFailure) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                // MSG_NOSIGNAL: a peer that closed must show up as EPIPE, not kill
                // the process with SIGPIPE.
                Glibc.send(descriptor, buffer.baseAddress.map { $0 + offset }, buffer.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                offset += written
                continue
            }
            let code = errno
            if written < 0, code == EAGAIN || code == EWOULDBLOCK || code == EINTR {
                try waitUntilReady(for: Int16(POLLOUT), deadline: deadline)
                continue
            }
            throw Self.failure(operation: "send", code: written == 0 ? EPIPE : code)
        }
    }

    /// Reads what is available into `buffer`, waiting until `deadline` for the first
    /// byte. Returns 0 when the peer closed the connection.
    func receive(into buffer: UnsafeMutableRawBufferPointer, deadline: UInt64) throws(SocketFailure) -> Int {
        while true {
            let count = recv(descriptor, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            let code = errno
            if code == EAGAIN || code == EWOULDBLOCK || code == EINTR {
                try waitUntilReady(for: Int16(POLLIN), deadline: deadline)
                continue
            }
            throw Self.failure(operation: "recv", code: code)
        }
    }

    /// Looks, without blocking, whether the server closed this connection or wrote
    /// to it while it sat idle between two requests.
    func idleState() -> IdleState {
        var probe = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&probe, 1, 0) > 0 else { return .open }
        var byte: UInt8 = 0
        let count = recv(descriptor, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if count > 0 { return .unsolicitedData }
        if count == 0 { return .closed }
        let code = errno
        return code == EAGAIN || code == EWOULDBLOCK || code == EINTR ? .open : .closed
    }

    /// Waits with `poll` until the socket is ready for `events` (or has an error or
    /// hang-up, which the following call then reports), or throws `timeout`.
    private func waitUntilReady(for events: Int16, deadline: UInt64) throws(SocketFailure) {
        while true {
            let now = MonotonicClock.now()
            guard now < deadline else {
                throw SocketFailure(kind: .timeout, detail: events == Int16(POLLIN) ? "no response in time" : "timed out")
            }
            // Round up so a sub-millisecond remainder does not become a busy loop
            // of zero-timeout polls.
            let milliseconds = Int32(min((deadline - now + 999_999) / 1_000_000, 60_000))
            var probe = pollfd(fd: descriptor, events: events, revents: 0)
            let ready = poll(&probe, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0 {
                let code = errno
                if code == EINTR { continue }
                throw Self.failure(operation: "poll", code: code)
            }
        }
    }

    /// Sorts an errno from sending or receiving into the report's kinds.
    private static func failure(operation: String, code: Int32) -> SocketFailure {
        let kind: FailureKind = code == ETIMEDOUT ? .timeout : .reset
        return SocketFailure(kind: kind, detail: "\(operation): \(errorText(code))")
    }
}

@available(*, unavailable)
extension ClientSocket: Sendable {}

/// `strerror` text for an errno value.
func errorText(_ code: Int32) -> String {
    // glibc's strerror returns static text for every known errno, so it is safe
    // from several threads here.
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}
