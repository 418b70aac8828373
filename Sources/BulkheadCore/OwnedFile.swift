#if canImport(Glibc)
import Glibc
#endif

/// Checks and opens the files and directories of the data directory without ever
/// following a symbolic link, and refuses any that another user owns or may write.
///
/// Why both `lstat` checks and checks on open descriptors: the checks at start name
/// every problem before anything is written; `O_NOFOLLOW` and `fstat` on the open
/// descriptor make each open safe on its own, whatever changed since.
public enum OwnedFile {
    /// What a path must be.
    public enum Kind: Sendable {
        /// A directory.
        case directory
        /// A regular file.
        case regularFile
        /// A Unix socket.
        case socket
        /// Anything but a symbolic link.
        case any

        var name: String {
            switch self {
            case .directory: "directory"
            case .regularFile: "regular file"
            case .socket: "socket"
            case .any: "file"
            }
        }

        func matches(_ mode: mode_t) -> Bool {
            switch self {
            case .directory: mode & S_IFMT == S_IFDIR
            case .regularFile: mode & S_IFMT == S_IFREG
            case .socket: mode & S_IFMT == S_IFSOCK
            case .any: true
            }
        }
    }

    /// The user every path must belong to: the effective one, whose rights the
    /// process uses.
    public static var user: uid_t { geteuid() }

    // MARK: - Checks

    /// Checks the path itself, never what a link points to. Returns false when
    /// nothing is there.
    ///
    /// - Parameters:
    ///   - secret: the file holds tokens, so its group and others must not read it.
    ///   - singleLink: refuse a file with another hard link (a name elsewhere that
    ///     someone may have made to a file of ours).
    @discardableResult
    public static func check(_ path: String, is kind: Kind, secret: Bool = false, singleLink: Bool = false)
        throws(DataDirectoryError) -> Bool
    {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return false }
            throw .system(path: path, operation: "inspect", code: errno)
        }
        try judge(info, path: path, kind: kind, secret: secret, singleLink: singleLink)
        return true
    }

    /// Checks an open descriptor (`fstat`): the file it reached, whatever its name
    /// pointed to when it was opened.
    public static func check(descriptor: Int32, path: String, is kind: Kind, secret: Bool = false, singleLink: Bool = false)
        throws(DataDirectoryError)
    {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .system(path: path, operation: "inspect", code: errno) }
        try judge(info, path: path, kind: kind, secret: secret, singleLink: singleLink)
    }

    /// The rules, in the order a person would fix them: what it is, whose it is,
    /// who else may write or read it.
    static func judge(_ info: stat, path: String, kind: Kind, secret: Bool, singleLink: Bool) throws(DataDirectoryError) {
        let mode = info.st_mode
        if mode & S_IFMT == S_IFLNK { throw .symbolicLink(path: path) }
        guard kind.matches(mode) else { throw .wrongKind(path: path, expected: kind.name) }
        guard info.st_uid == user else { throw .wrongOwner(path: path, owner: info.st_uid, user: user) }
        // A sticky bit is not enough: it keeps others from swapping entries, not from
        // creating new ones (a token, a log) before bulkhead does.
        if mode & 0o022 != 0 { throw .writableByOthers(path: path, mode: mode & 0o7777) }
        if secret, mode & 0o044 != 0 { throw .readableByOthers(path: path, mode: mode & 0o7777) }
        if singleLink, mode & S_IFMT == S_IFREG, info.st_nlink > 1 {
            throw .hardLinked(path: path, links: Int(info.st_nlink))
        }
    }

    // MARK: - Opening

    /// Opens an existing file for reading, without following a link, and checks it.
    /// Returns nil when there is none. The caller closes the descriptor.
    public static func openForReading(_ path: String, secret: Bool = false) throws(DataDirectoryError) -> Int32? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { return nil }
            throw code == ELOOP ? .symbolicLink(path: path) : .system(path: path, operation: "open", code: code)
        }
        return try checkedRegularFile(fd, path: path, secret: secret)
    }

    /// Checks what `fd` (just opened at `path`) is, and returns it; closes it and
    /// throws when it is not one regular file of ours.
    private static func checkedRegularFile(_ fd: Int32, path: String, secret: Bool) throws(DataDirectoryError) -> Int32 {
        do {
            try check(descriptor: fd, path: path, is: .regularFile, secret: secret, singleLink: true)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Creates `path` with `contents` and `mode`, and syncs it. Never opens a file
    /// that is already there, a link included (`O_EXCL`): remove it first.
    public static func create(_ path: String, contents: [UInt8], mode: mode_t = 0o600) throws(DataDirectoryError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else {
            let code = errno
            // O_EXCL answers EEXIST for a link, dangling or not: say which it is.
            var info = stat()
            if code == EEXIST, lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK { throw .symbolicLink(path: path) }
            throw .system(path: path, operation: "create", code: code)
        }
        defer { close(fd) }
        try write(contents, to: fd, path: path)
        guard fsync(fd) == 0 else { throw .system(path: path, operation: "sync", code: errno) }
    }

    /// Opens `path` for appending, creating it with `mode` when missing, without
    /// following a link, and checks what was opened. The caller closes the descriptor.
    public static func openForAppending(_ path: String, mode: mode_t = 0o600, secret: Bool = false)
        throws(DataDirectoryError) -> Int32
    {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode)
        guard fd >= 0 else {
            let code = errno
            throw code == ELOOP ? .symbolicLink(path: path) : .system(path: path, operation: "open", code: code)
        }
        // O_NONBLOCK only kept a FIFO planted here from blocking the open; the check
        // refuses it, and a regular file ignores the flag.
        _ = try checkedRegularFile(fd, path: path, secret: secret)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    /// Reads the whole file (a token file: a few bytes).
    public static func readAll(_ fd: Int32, path: String) throws(DataDirectoryError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw .system(path: path, operation: "read", code: errno)
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }

    /// Writes all of `bytes`.
    public static func write(_ bytes: [UInt8], to fd: Int32, path: String) throws(DataDirectoryError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .system(path: path, operation: "write", code: errno)
            }
            offset += written
        }
    }
}
