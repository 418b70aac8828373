#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// What an accept loop does after `accept` fails, so that no loop ever ends on an
/// error: only a deliberate stop ends one.
///
/// An admin socket whose accept thread returned on the first error locked every CLI
/// command out until a restart, after a flood of API connections had used up the
/// process's descriptors for a while. Running out of descriptors or memory passes:
/// the loop waits (10 ms, doubling to 1 s, so it neither spins nor sleeps long once
/// a descriptor is free) and tries again, and says so once per episode, not once per
/// try. Errors that belong to one connection (the peer reset it before it was taken)
/// or to the call (a signal, a receive timeout) are retried at once.
public struct AcceptRetry: Sendable {
    /// The first wait after a failure that waiting can cure.
    public static let firstDelay = 0.010
    /// The longest wait between two tries.
    public static let longestDelay = 1.0

    /// What the loop does next.
    public enum Action: Equatable, Sendable {
        /// Try again at once.
        case retryNow
        /// Wait this many seconds, then try again.
        case wait(seconds: Double)
    }

    /// The listener, as the log lines name it (`admin socket DATA/run/admin.sock`).
    public let listener: String
    /// The current episode of failures, if one is going on.
    private var episode: (code: Int32, failures: Int, delay: Double)?

    /// A retry policy for one accept loop.
    public init(listener: String) {
        self.listener = listener
    }

    /// Whether the loop is waiting out a shortage (descriptors, memory).
    public var isBackingOff: Bool { episode != nil }

    /// Decides what follows a failed `accept` with `errno` `code`; `report` is the
    /// line to log, given once per episode.
    public mutating func failed(code: Int32) -> (action: Action, report: String?) {
        switch code {
        case EINTR, EAGAIN, EWOULDBLOCK, ECONNABORTED, EPROTO,
             // Linux hands pending network errors of the new connection to accept
             // (accept(2)): they belong to that connection, not to the listener.
             ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH:
            return (.retryNow, nil)
        default:
            // EMFILE, ENFILE, ENOBUFS, ENOMEM — and anything unexpected, which must
            // not end the loop either.
            guard var current = episode else {
                episode = (code, 1, Self.firstDelay)
                return (.wait(seconds: Self.firstDelay),
                        "accept on \(listener) failed: \(Self.words(code)); retrying with a backoff up to \(Self.longestDelay) s")
            }
            current.failures += 1
            current.delay = min(current.delay * 2, Self.longestDelay)
            episode = current
            return (.wait(seconds: current.delay), nil)
        }
    }

    /// Records an accepted connection; returns the line to log when it ends an episode.
    public mutating func succeeded() -> String? {
        guard let ended = episode else { return nil }
        episode = nil
        return "accept on \(listener) works again after \(ended.failures) failed tries (\(Self.words(ended.code)))"
    }

    private static func words(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

extension Sockets {
    /// Accepts one connection on a blocking listener, through every error (see
    /// `AcceptRetry`); returns nil only once `stopped` says the loop should end. The
    /// new socket is close-on-exec.
    ///
    /// `stopped` is asked before every try and during every wait, so a stop is seen
    /// within the listener's receive timeout (if it has one) or 50 ms of a wait.
    public static func acceptRetrying(
        _ listener: Int32, retry: inout AcceptRetry, log: (String) -> Void, stopped: () -> Bool
    ) -> Int32? {
        while !stopped() {
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                // Set before any spawn can happen on this process's behalf: children
                // must inherit only the descriptors they are given on purpose.
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                if let line = retry.succeeded() { log(line) }
                return fd
            }
            let (action, report) = retry.failed(code: errno)
            if let report { log(report) }
            guard case .wait(let seconds) = action else { continue }
            let until = Date().addingTimeInterval(seconds)
            while !stopped() {
                let left = until.timeIntervalSinceNow
                if left <= 0 { break }
                usleep(useconds_t(min(left, 0.05) * 1_000_000))
            }
        }
        return nil
    }
}
