#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The layout of `--data DIR`: the store, `run/` sockets and the lock, logs.
public struct DataDirectory: Sendable, Equatable {
    /// The directory itself, absolute.
    public var root: String

    /// Uses `path` (made absolute against the current directory).
    public init(_ path: String) {
        if path.hasPrefix("/") {
            root = path
        } else {
            root = FileManager.default.currentDirectoryPath + "/" + path
        }
        while root.count > 1, root.hasSuffix("/") { root.removeLast() }
    }

    /// Sockets and the supervisor lock.
    public var run: String { root + "/run" }
    /// Supervisor and worker logs.
    public var logs: String { root + "/logs" }
    /// The supervisor's lock file: whoever holds it supervises.
    public var lockFile: String { run + "/supervisor.lock" }
    /// The control process's lock file (`bulkhead control`): whoever holds it is the
    /// one control plane, and the one rollout driver, of this data directory.
    public var controlLock: String { run + "/control.lock" }
    /// The pid of the control process the host agent started, for its successor to adopt.
    public var controlPID: String { run + "/control.pid" }
    /// The host's socket (0600): the host routes (`/v1/host/…`: status, break glass, scale).
    public var adminSocket: String { run + "/admin.sock" }
    /// The control API's socket (0600): the same routes as TCP, for the CLI.
    public var controlSocket: String { run + "/control.sock" }
    /// The demo customers' tokens, written by `serve --demo` (0600).
    public var demoTokens: String { root + "/demo-tokens" }
    /// The operators' admin token for the control API (0600).
    public var adminToken: String { root + "/admin.token" }

    /// The note a worker leaves when it crashes inside a script: that script's
    /// "customer/name" (see `bh_crash_notes_install`).
    public func crashNote(pid: Int32) -> String {
        run + "/crash-\(pid).note"
    }

    /// The control socket of one worker. `instance` makes it unique across restarts.
    public func workerSocket(pool: String, slot: Int, instance: UInt64) -> String {
        run + "/worker-\(pool)-\(slot)-\(instance).sock"
    }

    /// The connection counts a pool's workers share to spread new connections
    /// among themselves (see the worker's `AcceptBalance`).
    public func acceptBalance(pool: String) -> String {
        run + "/accept-\(pool).shm"
    }

    /// Creates what is missing of the directory tree (0700: it holds tokens and
    /// sockets) and checks all of it, for `bulkhead serve` before it reads or writes
    /// anything there. See ``verified()`` for the rules.
    ///
    /// Besides: an existing `run/` or `logs/` of ours that its group or others may
    /// read (not write) is narrowed to 0700, since nobody else can have put anything
    /// in it; one they may write is refused, since anything in it may have been
    /// swapped. Every entry of `run/` and `logs/` must be ours and no link, and the
    /// token files and logs must each be a regular file with one link, the token
    /// files readable by us alone.
    public func create() throws(DataDirectoryError) {
        var info = stat()
        if lstat(root, &info) != 0 {
            guard errno == ENOENT else { throw .system(path: root, operation: "inspect", code: errno) }
            // Parents get the usual mode (the umask's): they are the user's to choose,
            // a project folder say; only the data directory itself must be private.
            try Self.makeParents(of: root)
            if mkdir(root, 0o700) != 0, errno != EEXIST { throw .system(path: root, operation: "create", code: errno) }
        }
        let directory = try resolved() ?? self
        try directory.checkRoot()
        for path in [directory.run, directory.logs] {
            try Self.makePrivateDirectory(path)
            try Self.checkEntries(of: path)
        }
        try OwnedFile.check(directory.adminToken, is: .regularFile, secret: true, singleLink: true)
        try OwnedFile.check(directory.demoTokens, is: .regularFile, secret: true, singleLink: true)
    }

    /// Checks what exists of the directory and creates nothing (for the CLI, before a
    /// command reads or writes anything there); returns it named by its real path.
    ///
    /// The rules: the directory must belong to the running user and not be writable
    /// by its group or others. It may be reached through a symbolic link (a user may
    /// point ./.bulkhead somewhere else): the link is resolved once, here, the real
    /// directory is checked, and the caller uses the real path from then on, so a
    /// link changed later is not followed. `run/` and `logs/`, when present, must be
    /// directories of ours (never links) that others cannot write. A missing data
    /// directory passes: there is nothing in it to trust, and what a command does
    /// without one is that command's business.
    public func verified() throws(DataDirectoryError) -> DataDirectory {
        guard let directory = try resolved() else { return self }
        try directory.checkRoot()
        try OwnedFile.check(directory.run, is: .directory)
        try OwnedFile.check(directory.logs, is: .directory)
        return directory
    }

    /// The directory at its real path, or nil when it does not exist.
    func resolved() throws(DataDirectoryError) -> DataDirectory? {
        guard let real = realpath(root, nil) else {
            if errno == ENOENT { return nil }
            throw .system(path: root, operation: "resolve", code: errno)
        }
        defer { free(real) }
        return DataDirectory(String(cString: real))
    }

    /// The data directory itself (already resolved: `stat` follows nothing more).
    private func checkRoot() throws(DataDirectoryError) {
        guard try OwnedFile.check(root, is: .directory) else {
            throw .system(path: root, operation: "inspect", code: ENOENT)
        }
    }

    /// Creates the missing directories above `path`, like `mkdir -p`.
    private static func makeParents(of path: String) throws(DataDirectoryError) {
        let parent = (path as NSString).deletingLastPathComponent
        guard !parent.isEmpty, parent != path else { return }
        var info = stat()
        if stat(parent, &info) == 0 { return }
        try makeParents(of: parent)
        if mkdir(parent, 0o777) != 0, errno != EEXIST { throw .system(path: parent, operation: "create", code: errno) }
    }

    /// Creates `path` (0700) unless it exists, then checks it; narrows an existing
    /// one of ours that others may read (see ``create()``).
    private static func makePrivateDirectory(_ path: String) throws(DataDirectoryError) {
        if mkdir(path, 0o700) != 0, errno != EEXIST { throw .system(path: path, operation: "create", code: errno) }
        try OwnedFile.check(path, is: .directory)
        // O_NOFOLLOW and O_DIRECTORY: chmod the directory just checked, never a link
        // put in its place since.
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw errno == ELOOP ? .symbolicLink(path: path) : .system(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        try OwnedFile.check(descriptor: fd, path: path, is: .directory)
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system(path: path, operation: "inspect", code: errno) }
        if info.st_mode & 0o077 != 0, fchmod(fd, 0o700) != 0 {
            throw .system(path: path, operation: "chmod 700", code: errno)
        }
    }

    /// Every entry of `directory` is ours and no link; log files have one link.
    private static func checkEntries(of directory: String) throws(DataDirectoryError) {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw .system(path: directory, operation: "list", code: EIO)
        }
        for entry in entries.sorted() {
            let path = directory + "/" + entry
            if entry.hasSuffix(".log") {
                try OwnedFile.check(path, is: .regularFile, singleLink: true)
            } else {
                try OwnedFile.check(path, is: .any)
            }
        }
    }
}
