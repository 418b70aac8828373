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
    /// The operators' admin socket.
    public var adminSocket: String { run + "/admin.sock" }
    /// The demo customers' tokens, written by `serve --demo` (0600).
    public var demoTokens: String { root + "/demo-tokens" }

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

    /// Creates the directory tree (0700: it holds tokens and sockets).
    public func create() throws {
        for path in [root, run, logs] {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }
}
