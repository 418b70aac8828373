#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Accepts client connections from the inherited listening socket on a thread of its
/// own and hands each to an event loop, round robin.
///
/// The socket belongs to the supervisor, which may hand it to the next ingress while
/// this one drains. A blocking `accept` leaves it as it was: NIO's server channel
/// would make it non-blocking, listen on it again with its own backlog, and assert
/// when a second process takes a connection first (as the workers found). The thread
/// hop happens once per connection, never per request.
final class IngressAcceptor: Sendable {
    private let listenFD: Int32
    private let targets: [(loop: any EventLoop, bootstrap: NIOLoopBound<ClientBootstrap>)]
    private let stopped = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let log: @Sendable (String) -> Void

    init(
        listenFD: Int32, targets: [(loop: any EventLoop, bootstrap: NIOLoopBound<ClientBootstrap>)],
        log: @escaping @Sendable (String) -> Void
    ) {
        self.listenFD = listenFD
        self.targets = targets
        self.log = log
        // A receive timeout on a listening socket bounds `accept`, so stopping is
        // noticed within it.
        Sockets.setReceiveTimeout(listenFD, seconds: 0.1)
    }

    /// Starts accepting.
    func start() {
        guard !started.exchange(true, ordering: .relaxed), !targets.isEmpty else { return }
        let thread = Thread { [self] in
            var next = 0
            // Out of descriptors or memory: back off instead of spinning, say so once
            // per episode (not once per try), and never stop accepting on an error.
            // The ingress spawns nothing, but the new socket is close-on-exec anyway.
            var retry = AcceptRetry(listener: "ingress descriptor \(listenFD)")
            let log: (String) -> Void = { line in self.log("ingress: \(line)") }
            while !stopped.load(ordering: .relaxed) {
                guard let fd = Sockets.acceptRetrying(
                    listenFD, retry: &retry, log: log, stopped: { stopped.load(ordering: .relaxed) })
                else { break }
                let target = targets[next]
                next = (next + 1) % targets.count
                // Wait until the loop has taken the connection: a stop that returns
                // has then handed over every connection it accepted.
                let taken = DispatchSemaphore(value: 0)
                target.loop.execute {
                    // NIO owns the descriptor from here, failure included: closing it
                    // again could close a descriptor reused meanwhile.
                    _ = target.bootstrap.value.withConnectedSocket(fd)
                    taken.signal()
                }
                taken.wait()
            }
            done.signal()
        }
        thread.name = "ingress-accept"
        thread.start()
    }

    /// Stops accepting; returns once the thread has ended (within the timeout).
    func stop() {
        guard started.load(ordering: .relaxed), !stopped.exchange(true, ordering: .relaxed) else { return }
        done.wait()
    }
}
