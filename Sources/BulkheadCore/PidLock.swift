#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// An exclusive `flock` on a file that holds the holder's pid: the supervisor's lock
/// (`run/supervisor.lock`) and control's (`run/control.lock`). The kernel releases
/// it when the holder dies, however it dies, so a lock is never left stale.
public struct PidLock: Sendable {
    /// The lock is held by another process.
    public struct Held: Error, CustomStringConvertible, Sendable {
        /// The lock file.
        public var path: String
        /// The pid the holder wrote, as written ("?" when unreadable).
        public var holder: String

        public var description: String { "\(path) is held by pid \(holder)" }
    }

    /// The open, locked file; closing it releases the lock.
    public let descriptor: Int32

    /// Takes the lock at `path` without waiting and writes this pid into it. Throws
    /// `Held` naming the holder's pid, or the error that kept the file from opening.
    public static func take(_ path: String) throws -> PidLock {
        // O_NOFOLLOW: the lock is truncated below; never a file a link points at.
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open \(path)") }
        do {
            try OwnedFile.check(descriptor: fd, path: path, is: .regularFile, singleLink: true)
        } catch {
            close(fd)
            throw error
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let pid = readPID(fd)
            close(fd)
            throw Held(path: path, holder: pid.map(String.init) ?? "?")
        }
        ftruncate(fd, 0)
        let text = "\(getpid())\n"
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return PidLock(descriptor: fd)
    }

    /// The pid holding the lock at `path` now, or nil when nobody holds it (or the
    /// file is missing). Probes with a non-blocking `flock` that it drops at once.
    public static func holder(of path: String) -> pid_t? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readPID(fd)
    }

    /// Releases the lock.
    public func release() {
        close(descriptor)
    }

    private static func readPID(_ fd: Int32) -> pid_t? {
        var bytes = [UInt8](repeating: 0, count: 32)
        let count = pread(fd, &bytes, bytes.count, 0)
        guard count > 0 else { return nil }
        return pid_t(String(decoding: bytes[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
