#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Synchronization

/// Accepts connections from the pool's listening socket, which every worker of the
/// pool shares, and hands each to the worker's loop.
///
/// A blocking `accept` on a shared socket wakes exactly one waiting process; a
/// loop polling the socket would wake every worker of the pool for each
/// connection, and all but one would find nothing to accept. The thread hop
/// happens once per connection, never per request.
final class Acceptor: Sendable {
    private let listenFD: Int32
    private let balance: AcceptBalance?
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(listenFD: Int32, balance: AcceptBalance?) {
        self.listenFD = listenFD
        self.balance = balance
        // A receive timeout on a listening socket bounds `accept`, so a stopping
        // worker notices within it. The socket is shared: every worker sets the same.
        Sockets.setReceiveTimeout(listenFD, seconds: 0.2)
    }

    /// Starts accepting; every connection is handed to `take` on `loop`, which owns
    /// the descriptor from then on.
    func start(on loop: WorkerLoop, take: @escaping @Sendable (Int32) -> Void) {
        let thread = Thread { [self] in
            // Out of descriptors or memory: back off instead of spinning, say so once,
            // and never stop accepting on an error.
            var retry = AcceptRetry(listener: "the pool's listening socket")
            let log: (String) -> Void = { line in
                FileHandle.standardError.write(Data("worker \(getpid()): \(line)\n".utf8))
            }
            while !stopped.load(ordering: .relaxed) {
                // The balance is asked before every try, as the stop is.
                guard let fd = Sockets.acceptRetrying(listenFD, retry: &retry, log: log, stopped: {
                    stopped.load(ordering: .relaxed) || balance?.mayAccept() == false
                }) else {
                    // Stopping, or a sibling should take the next connection.
                    usleep(1_000)
                    continue
                }
                // Wait until the loop has taken the connection before accepting the
                // next: a busy loop then leaves queued connections to the other
                // workers of the pool, as an nginx worker accepts only when its
                // loop runs.
                let taken = DispatchSemaphore(value: 0)
                loop.execute {
                    take(fd)
                    taken.signal()
                }
                taken.wait()
            }
            done.signal()
        }
        thread.name = "accept"
        thread.start()
    }

    /// Stops accepting; returns once the thread has ended (within the timeout).
    func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        done.wait()
    }
}
