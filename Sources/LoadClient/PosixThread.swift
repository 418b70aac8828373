#if canImport(Glibc)
import Glibc
#endif

/// Starts the detached threads that carry the connections.
///
/// A thread per connection with blocking-style I/O keeps each request's timing easy
/// to reason about, and it keeps the load generator off Swift's cooperative pool,
/// which the tests driving it need for themselves.
enum PosixThread {
    /// The closure handed to the new thread through `pthread_create`'s one pointer.
    private final class Box {
        let body: @Sendable () -> Void
        init(body: @escaping @Sendable () -> Void) {
            self.body = body
        }
    }

    /// Starts `body` on a new detached thread. Returns the `pthread_create` error
    /// code on failure.
    static func detach(_ body: @escaping @Sendable () -> Void) -> Int32? {
        let box = Unmanaged.passRetained(Box(body: body))
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        // Connections need little stack; 8 MiB each adds up with many connections.
        pthread_attr_setstacksize(&attributes, 512 * 1024)
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { raw in
            guard let raw else { return nil }
            let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
            box.body()
            return nil
        }, box.toOpaque())
        if result != 0 {
            box.release()
            return result
        }
        return nil
    }
}
