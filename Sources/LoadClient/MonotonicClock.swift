#if canImport(Glibc)
import Glibc
#else
#error("LoadClient uses Glibc's sockets and threads directly: it builds on Linux only.")
#endif

/// Time for deadlines, pacing and the timeline: nanoseconds on `CLOCK_MONOTONIC`.
///
/// Plain integers rather than `ContinuousClock.Instant` because every request reads
/// the clock several times and the values go straight into `poll` timeouts and
/// `pthread_cond_timedwait`, which want integers anyway.
enum MonotonicClock {
    /// Nanoseconds since an arbitrary, fixed point (the system's boot).
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    /// Seconds since the Unix epoch, for the report's start time only.
    static func wallSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

extension Duration {
    /// This duration in whole nanoseconds; negative durations count as zero and
    /// absurdly long ones saturate instead of trapping.
    var clampedNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return UInt64.max / 2 }
        let fraction = attoseconds / 1_000_000_000
        return fraction >= 0 ? whole &+ UInt64(fraction) : whole &- UInt64(-fraction)
    }

    /// This duration in seconds, for reports.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
