#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore

/// Starts worker processes with posix_spawn.
///
/// The worker's command line and descriptors are a versioned contract (a binary
/// rollout runs workers of another build):
///
///     EXECUTABLE worker --protocol 1 --pool NAME --slot N --instance ID --data DIR
///
/// with descriptor 3 the pool's listening TCP socket and descriptor 4 the worker's
/// listening control socket (a Unix socket at `DataDirectory.workerSocket`), stdin
/// /dev/null and stdout/stderr appended to `DATA/logs/POOL.log`.
public enum WorkerSpawner {
    /// The descriptor the pool's listening socket has in a worker.
    public static let listenDescriptor: Int32 = 3
    /// The descriptor the worker's control listener has in a worker.
    public static let controlDescriptor: Int32 = 4

    /// What to start.
    public struct Request: Sendable {
        /// The executable (the supervisor's own, or a rolled-out binary).
        public var executable: String
        /// Pool name.
        public var pool: String
        /// Slot in the pool.
        public var slot: Int
        /// Unique instance number.
        public var instance: UInt64
        /// The data directory.
        public var data: DataDirectory
        /// The pool's listening socket in the supervisor.
        public var listenFD: Int32
        /// The control listener created for this worker.
        public var controlFD: Int32
        /// Extra environment, `KEY=VALUE`.
        public var environment: [String] = []
    }

    /// Spawns one worker; returns its pid.
    public static func spawn(_ request: Request) throws -> pid_t {
        let arguments = [
            request.executable, "worker",
            "--protocol", String(controlProtocolVersion),
            "--pool", request.pool,
            "--slot", String(request.slot),
            "--instance", String(request.instance),
            "--data", request.data.root,
        ]
        return try spawnProcess(
            arguments: arguments, descriptors: [request.listenFD, request.controlFD],
            log: request.data.logs + "/\(request.pool).log", environment: request.environment)
    }

    /// Spawns `arguments[0]` with `descriptors` as 3, 4, …, stdin /dev/null and
    /// stdout/stderr appended to `log`, in its own process group, default signals.
    /// Throws a ``DataDirectoryError`` when `log` is a link, is not a regular file of
    /// ours with one link, or others may write it; a ``SystemError`` when the spawn fails.
    public static func spawnProcess(arguments: [String], descriptors: [Int32], log: String, environment extra: [String]) throws -> pid_t {
        // Opened here, not by the child: here the file opened is checked before any
        // byte goes to it, and a refusal names the file instead of failing the spawn.
        let logFD = highDescriptor(try OwnedFile.openForAppending(log, mode: 0o600))
        defer { close(logFD) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto 3, 4, … clears close-on-exec on the copies; sources are high
        // numbers (see `highDescriptor`), so no dup2 can clobber another's source.
        for (index, descriptor) in descriptors.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, descriptor, listenDescriptor + Int32(index))
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group: a Ctrl-C meant for the supervisor's terminal must not
        // take the data plane with it (fail static). Default signal handling and an
        // empty mask, whatever the supervisor had.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGCHLD)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var environment: [String] = []
        var index = 0
        while let entry = environ[index] {
            let value = String(cString: entry)
            if !value.hasPrefix("BULKHEAD_WORKER_") { environment.append(value) }
            index += 1
        }
        environment.append(contentsOf: extra)
        // A crashing process must be gone at once so its replacement starts; the
        // backtracer would keep it alive for seconds. Operators can opt back in.
        if !environment.contains(where: { $0.hasPrefix("SWIFT_BACKTRACE=") }) {
            environment.append("SWIFT_BACKTRACE=enable=no")
        }

        var pid: pid_t = 0
        let result = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in
                posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
            }
        }
        guard result == 0 else { throw SystemError("spawn \(arguments[0])", code: result) }
        return pid
    }

    /// Moves a descriptor to a number of 100 or more (close-on-exec), closing the
    /// original, so the dup2s of `spawn` never collide with it.
    public static func highDescriptor(_ fd: Int32) -> Int32 {
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, 100)
        guard moved >= 0 else { return fd }
        close(fd)
        return moved
    }

    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
