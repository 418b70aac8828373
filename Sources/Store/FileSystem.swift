#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few POSIX file operations the store needs that Foundation does not offer.
enum FileSystem {
    /// Whether `walPath` holds at least one frame past the 32-byte WAL header.
    static func hasWALFrames(_ walPath: String) -> Bool {
        var info = stat()
        guard stat(walPath, &info) == 0 else { return false }
        return info.st_size > 32
    }

    /// Links `source` to `destination` without ever replacing an existing file.
    /// Returns false when `destination` exists; throws for any other failure.
    static func linkWithoutReplacing(_ source: String, to destination: String) throws -> Bool {
        if link(source, destination) == 0 { return true }
        var code = errno
        if code == EEXIST { return false }
        if code == EPERM || code == EOPNOTSUPP || code == ENOSYS {
            // A file system without hard links: rename, which could replace a store
            // created in the instant since the caller looked. Look once more first.
            var info = stat()
            if stat(destination, &info) == 0 { return false }
            if rename(source, destination) == 0 { return true }
            code = errno
        }
        throw StoreError.cannotOpen(
            path: destination, "cannot move the new store into place: \(String(cString: strerror(code)))")
    }

    /// Removes `path`, ignoring a missing file.
    static func remove(_ path: String) {
        _ = unlink(path)
    }

    /// Makes directory entries in the directory of `path` durable (a new file's name
    /// survives a power cut only once its directory is synced).
    static func syncDirectory(containing path: String) {
        var directory = path
        if let slash = directory.lastIndex(of: "/") {
            directory = slash == directory.startIndex ? "/" : String(directory[..<slash])
        } else {
            directory = "."
        }
        let descriptor = open(directory, O_RDONLY)
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        _ = close(descriptor)
    }

    /// Up to `count` bytes from the start of `path`.
    static func readPrefix(of path: String, count: Int) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw StoreError.cannotOpen(path: path, String(cString: strerror(errno)))
        }
        defer { _ = close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = buffer.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return read(descriptor, base + filled, count - filled)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw StoreError.cannotOpen(path: path, String(cString: strerror(errno)))
            }
            if got == 0 { break }
            filled += got
        }
        return Array(buffer.prefix(filled))
    }
}
