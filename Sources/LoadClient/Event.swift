#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A flag that is set once and that threads can sleep on until it is set or a
/// deadline passes.
///
/// Rate-paced connections spend most of their time asleep; a condition variable lets
/// `LoadRun.stop()` wake them at once instead of after their next slot.
/// `Synchronization.Mutex` has no condition variable, hence pthreads.
final class Event: @unchecked Sendable {
    // @unchecked: the pthread objects are only touched under `mutex`, and `flag`
    // is atomic; the pointers themselves never change after `init`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let flag = Atomic<Bool>(false)

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Deadlines come from CLOCK_MONOTONIC; the default (REALTIME) would make
        // sleeps jump when the wall clock is set.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deinitialize(count: 1)
        condition.deallocate()
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Whether `set()` was called; cheap enough for every loop iteration.
    var isSet: Bool { flag.load(ordering: .acquiring) }

    /// Sets the flag and wakes every waiter. Idempotent.
    func set() {
        pthread_mutex_lock(mutex)
        flag.store(true, ordering: .releasing)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Sleeps until the flag is set or `deadline` (a `MonotonicClock` value) passes;
    /// `nil` waits for the flag alone. Returns whether the flag is set.
    @discardableResult
    func wait(until deadline: UInt64?) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !flag.load(ordering: .acquiring) {
            guard let deadline else {
                pthread_cond_wait(condition, mutex)
                continue
            }
            if MonotonicClock.now() >= deadline { return false }
            var time = timespec(
                tv_sec: Int(deadline / 1_000_000_000),
                tv_nsec: Int(deadline % 1_000_000_000)
            )
            // Spurious wake-ups and timeouts both loop back to the checks above.
            pthread_cond_timedwait(condition, mutex, &time)
        }
        return true
    }
}
