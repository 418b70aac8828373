import BulkheadCore

/// When to restart a pool's workers, and when the pool is degraded.
///
/// Pure: the caller passes the time, so it is tested without processes or sleeps.
/// In the spirit of OTP's restart intensity and systemd's `StartLimitBurst`: more
/// than `maxRestarts` within `window` seconds marks the pool degraded, and a
/// degraded pool backs off longer instead of spinning; it never touches another pool.
public struct RestartPolicy: Sendable, Equatable {
    /// Restarts allowed within `window` before the pool is degraded.
    public var maxRestarts: Int
    /// The sliding window, in seconds.
    public var window: Double
    /// Backoff of a degraded pool, in seconds.
    public var degradedBackoff: Double
    /// Longest backoff of a pool that is not degraded, in seconds.
    public var maxBackoff: Double

    /// Times of recent restarts, oldest first.
    public private(set) var recentRestarts: [Double] = []
    /// Whether the pool is degraded now.
    public private(set) var isDegraded = false
    /// Restarts since the pool started.
    public private(set) var totalRestarts = 0

    /// What to do about one exited worker.
    public struct Decision: Sendable, Equatable {
        /// Seconds to wait before starting the replacement.
        public var delay: Double
        /// Whether this exit made the pool degraded (it was not before).
        public var becameDegraded: Bool
    }

    /// A policy from the cohort's `[restart]` section.
    public init(_ configuration: CohortConfiguration.Restart, degradedBackoff: Double = 5, maxBackoff: Double = 1) {
        maxRestarts = configuration.maxRestarts
        window = configuration.windowSeconds
        self.degradedBackoff = degradedBackoff
        self.maxBackoff = maxBackoff
    }

    /// A worker exited at `now`: when to replace it.
    ///
    /// The first restart in a quiet window is immediate (a killed worker is back in
    /// milliseconds); later ones double from 50 ms up to `maxBackoff`.
    public mutating func workerExited(at now: Double) -> Decision {
        forget(before: now - window)
        recentRestarts.append(now)
        totalRestarts += 1
        let wasDegraded = isDegraded
        if recentRestarts.count > maxRestarts { isDegraded = true }
        if isDegraded {
            return Decision(delay: degradedBackoff, becameDegraded: !wasDegraded)
        }
        let earlier = recentRestarts.count - 1
        let delay = earlier == 0 ? 0 : min(maxBackoff, 0.05 * Double(1 << min(earlier - 1, 20)))
        return Decision(delay: delay, becameDegraded: false)
    }

    /// Called periodically: a degraded pool recovers once a whole window passes
    /// with no restart at all. Returns true when it recovered now.
    public mutating func tick(at now: Double) -> Bool {
        forget(before: now - window)
        if isDegraded && recentRestarts.isEmpty {
            isDegraded = false
            return true
        }
        return false
    }

    private mutating func forget(before cutoff: Double) {
        recentRestarts.removeAll { $0 < cutoff }
    }
}
