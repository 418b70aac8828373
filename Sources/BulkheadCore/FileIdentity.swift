#if canImport(Glibc)
import Glibc
#endif

/// What tells one version of a file from another without reading it: a rename gives
/// a new inode, a write in place a new size or modification and status-change times.
/// Used by the pollers of files a person edits: the ingress's routes file and the
/// supervisor's scripts directory.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modified: timespec
    public var changed: timespec

    public init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = info.st_mtim
        changed = info.st_ctim
    }

    /// The identity of the file at `path`, or nil when there is none (errno set).
    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        self.init(info)
    }

    /// Whether the file last changed at least a second before `now` (CLOCK_REALTIME).
    /// File times are coarse (a few milliseconds), so a file written twice in the same
    /// tick, at the same size, keeps its identity: a poller that records only settled
    /// identities reads an unsettled file again on its next poll.
    public func isSettled(at now: timespec) -> Bool {
        changed.tv_sec < now.tv_sec - 1 && modified.tv_sec < now.tv_sec - 1
    }

    /// The time now, for ``isSettled(at:)``.
    public static func now() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }

    public static func == (lhs: FileIdentity, rhs: FileIdentity) -> Bool {
        lhs.device == rhs.device && lhs.inode == rhs.inode && lhs.size == rhs.size
            && lhs.modified.tv_sec == rhs.modified.tv_sec && lhs.modified.tv_nsec == rhs.modified.tv_nsec
            && lhs.changed.tv_sec == rhs.changed.tv_sec && lhs.changed.tv_nsec == rhs.changed.tv_nsec
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(inode)
        hasher.combine(size)
        hasher.combine(modified.tv_nsec)
    }
}
