#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// This process's file descriptors: how many it may open and how many are open.
public enum Descriptors {
    /// The soft limit on open descriptors (RLIMIT_NOFILE); `Int32.max` when unlimited.
    public static func limit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int(Int32.max) }
        // RLIM_INFINITY is the largest value, so this covers it too.
        if limit.rlim_cur > rlim_t(Int32.max) { return Int(Int32.max) }
        return Int(limit.rlim_cur)
    }

    /// Raises the soft limit on open descriptors to the hard one, as a server that
    /// holds many connections should (the soft limit is often 1024 while the hard one
    /// is far higher); returns the soft limit in force afterwards. A failure leaves
    /// the limit as it was: the connection caps are computed from what is in force.
    @discardableResult
    public static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return self.limit()
    }

    /// Descriptors open now (the entries of /proc/self/fd, less the one that lists
    /// them); nil where /proc is not mounted.
    public static func openCount() -> Int? {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return nil }
        return max(0, entries.count - 1)
    }
}
