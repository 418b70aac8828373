#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store
import Supervisor
import Testing

/// The data directory as another user could leave it for a root-run host: owned by
/// `nobody`, a planted admin token, logs and directories that are links onto root's
/// files, a `run/` anyone may write with a fake admin socket in it, a store and its
/// log that are links into another instance's store. Each must stop `bulkhead serve`
/// at start and each CLI command before it acts, with a message that names the path;
/// and the links' targets (root's own files elsewhere) must be left byte for byte as
/// they were. The suite runs as root, as CI does; as anyone else it fails, since it
/// cannot give files away to `nobody`.
@Suite(.serialized) struct DataDirectoryTrustTests {
    /// The uid of `nobody`; fails the test when this process cannot chown to it.
    static func nobody() throws -> uid_t {
        try #require(geteuid() == 0, "this suite plants files owned by nobody, so it must run as root")
        let entry = try #require(getpwnam("nobody"), "no user nobody on this machine")
        return entry.pointee.pw_uid
    }

    static func bytes(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    /// Root's files elsewhere that planted links point at: a file with content, an
    /// empty file, and an empty directory.
    struct Targets {
        let file: String
        let emptyFile: String
        let otherEmptyFile: String
        let directory: String
        let fileBytes = Array("root's own file: not a log, not a token\n".utf8)

        init(under root: String) throws {
            let base = root + "/elsewhere"
            try FileManager.default.createDirectory(atPath: base + "/directory", withIntermediateDirectories: true)
            file = base + "/root-file"
            emptyFile = base + "/root-empty"
            otherEmptyFile = base + "/root-empty-too"
            directory = base + "/directory"
            try Data(fileBytes).write(to: URL(fileURLWithPath: file))
            try Data().write(to: URL(fileURLWithPath: emptyFile))
            try Data().write(to: URL(fileURLWithPath: otherEmptyFile))
        }

        /// Nothing was written through a link: every target as it was made.
        func expectUnchanged(_ when: String) {
            #expect(DataDirectoryTrustTests.bytes(file) == fileBytes, "\(when): \(file) was written through a link")
            for empty in [emptyFile, otherEmptyFile] {
                #expect(DataDirectoryTrustTests.bytes(empty) == [], "\(when): \(empty) was written through a link")
            }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["(unreadable)"]
            #expect(entries.isEmpty, "\(when): created in \(directory) through a link: \(entries)")
        }
    }

    /// `serve` exits non-zero at start with a message naming `path` and saying `what`;
    /// so does each CLI command in `commands`.
    static func expectRefused(_ host: HostHarness, path: String, saying what: String,
                              commands: [[String]] = [["status"], ["break-glass", "freeze"]]) throws {
        let serve = try host.runServeExpectingExit(timeout: 15)
        #expect(serve.status != 0, "serve started on \(path)")
        #expect(serve.output.contains(path) && serve.output.contains(what), "serve said: \(serve.output)")
        for command in commands {
            let result = try host.cli(command)
            #expect(result.status != 0, "\(command) went ahead")
            #expect(result.output.contains(path) && result.output.contains(what), "\(command) said: \(result.output)")
        }
    }

    static func makeHost() throws -> HostHarness {
        try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1)])
    }

    // MARK: The directory and its token

    @Test func aDataDirectoryOwnedByNobodyIsRefused() throws {
        let nobody = try Self.nobody()
        let host = try Self.makeHost()
        defer { host.stop() }
        let data = host.data
        let token = data.root + "/admin.token"
        #expect(mkdir(data.root, 0o700) == 0)
        // What nobody leaves there: their own admin token, which they would then know.
        try "bha_known_to_nobody\n".write(toFile: token, atomically: false, encoding: .utf8)
        chmod(token, 0o644)
        for path in [data.root, token] { #expect(chown(path, nobody, gid_t(nobody)) == 0) }

        try Self.expectRefused(host, path: data.root, saying: "is owned by uid \(nobody), not by you (uid 0)")
        // Nothing read or written there: no store, no run/, the token as planted.
        #expect(try FileManager.default.contentsOfDirectory(atPath: data.root) == ["admin.token"])
        #expect(Self.bytes(token) == Array("bha_known_to_nobody\n".utf8))
    }

    @Test func aPlantedAdminTokenIsRefused() throws {
        let nobody = try Self.nobody()
        let host = try Self.makeHost()
        defer { host.stop() }
        let data = host.data
        let token = data.root + "/admin.token"
        #expect(mkdir(data.root, 0o700) == 0)
        try "bha_known_to_nobody\n".write(toFile: token, atomically: false, encoding: .utf8)
        chmod(token, 0o644)
        #expect(chown(token, nobody, gid_t(nobody)) == 0)
        try Self.expectRefused(host, path: token, saying: "is owned by uid \(nobody), not by you (uid 0)", commands: [])

        // Ours, but others could read it: it may have leaked.
        #expect(chown(token, 0, 0) == 0)
        try Self.expectRefused(host, path: token, saying: "holds secrets but can be read by its group or others (mode 0644)",
                               commands: [])
        #expect(!FileManager.default.fileExists(atPath: data.root + "/bulkhead.sqlite"), "the store was opened")
    }

    // MARK: Links onto root's files

    @Test func aLogFileThatIsALinkIsRefused() throws {
        _ = try Self.nobody()
        let host = try Self.makeHost()
        defer { host.stop() }
        let targets = try Targets(under: host.root)
        let data = host.data
        try data.create()
        #expect(symlink(targets.file, data.logs + "/free.log") == 0)
        #expect(symlink(targets.emptyFile, data.logs + "/ingress.log") == 0)
        try Self.expectRefused(host, path: data.logs + "/free.log", saying: "is a symbolic link", commands: [])
        targets.expectUnchanged("a linked log")
    }

    @Test func aLinkedRunOrLogsDirectoryIsRefused() throws {
        _ = try Self.nobody()
        for sub in ["logs", "run"] {
            let host = try Self.makeHost()
            defer { host.stop() }
            let targets = try Targets(under: host.root)
            let data = host.data
            #expect(mkdir(data.root, 0o700) == 0)
            #expect(symlink(targets.directory, data.root + "/" + sub) == 0)
            try Self.expectRefused(host, path: data.root + "/" + sub, saying: "is a symbolic link")
            targets.expectUnchanged("a linked \(sub)/")
        }
    }

    /// `run/` left open to everyone: nobody puts a fake admin socket there, and the
    /// CLI must not send it a single command.
    @Test func aRunDirectoryOthersMayWriteIsRefusedAndItsSocketNotUsed() throws {
        let nobody = try Self.nobody()
        let host = try Self.makeHost()
        defer { host.stop() }
        let data = host.data
        try data.create()
        #expect(chmod(data.run, 0o777) == 0)
        let fake = try Sockets.listenUnix(path: data.adminSocket)
        defer {
            close(fake)
            unlink(data.adminSocket)
        }
        chmod(data.adminSocket, 0o777)
        #expect(chown(data.adminSocket, nobody, gid_t(nobody)) == 0)

        let result = try host.cli(["break-glass", "freeze"])
        #expect(result.status != 0)
        #expect(result.output.contains("\(data.run) can be written by its group or others (mode 0777)"), "\(result.output)")
        // Did anything connect to the fake socket? (A connection waits in its queue even
        // after the client gave up.)
        _ = fcntl(fake, F_SETFL, O_NONBLOCK)
        let client = accept(fake, nil, nil)
        if client >= 0 {
            var request = [UInt8](repeating: 0, count: 512)
            let count = max(0, recv(client, &request, request.count, 0))
            close(client)
            Issue.record("the CLI sent its command to nobody's socket: \(String(decoding: request[0..<count], as: UTF8.self))")
        }
        try Self.expectRefused(host, path: data.run, saying: "can be written by its group or others (mode 0777)")
    }

    /// The supervisor's side of the admin socket: with its directories and the
    /// socket loosened after the start (a mistaken chmod), a client running as
    /// nobody reaches the socket but is refused before any command is read, and a
    /// freeze it sends never takes effect.
    @Test func theSupervisorAnswersNoOtherUsersClient() throws {
        let nobody = try Self.nobody()
        let group = try #require(getpwnam("nobody")).pointee.pw_gid
        let host = try Self.makeHost()
        defer { host.stop() }
        try host.start()
        let data = host.data
        for path in [data.root, data.run] { #expect(chmod(path, 0o755) == 0) }
        #expect(chmod(data.adminSocket, 0o666) == 0)
        #expect(chmod(data.controlSocket, 0o666) == 0)
        // A real HTTP client (curl) as nobody: a freeze on admin.sock, and a customer
        // (the operator's identity on control.sock needs no token) on control.sock.
        func asNobody(_ socket: String, _ method: String, _ path: String, _ body: String) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid", "\(nobody)", "--regid", "\(group)", "--clear-groups",
                                 "/usr/bin/curl", "-sS", "--max-time", "5", "--unix-socket", socket, "-X", method,
                                 "-H", "content-type: application/json", "--data", body, "-w", " %{http_code}", "http://localhost" + path]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let answer = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return answer
        }
        let answer = try asNobody(data.adminSocket, "POST", "/v1/host/break-glass/freeze", "{}")
        print("nobody's freeze on admin.sock answered: \(answer)")
        #expect(answer.contains("answers only uid 0") && answer.hasSuffix(" 403"), "\(answer)")
        let control = try asNobody(data.controlSocket, "POST", "/v1/admin/customers", #"{"name": "mallory", "cohort": "free"}"#)
        print("nobody's customer add on control.sock answered: \(control)")
        #expect(control.contains("answers only uid 0") && control.hasSuffix(" 403"), "\(control)")
        #expect(try host.control("GET", "/v1/admin/customers").body.contains("mallory") == false)
        // Root's own client still works, and nobody's freeze did not happen.
        for path in [data.root, data.run] { #expect(chmod(path, 0o700) == 0) }
        let status = try host.cli(["status", "--json"])
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains("\"frozen\":false") || status.output.contains("\"frozen\" : false"), "\(status.output)")
    }

    /// The CLI's side of the admin socket: a command goes only to a supervisor of
    /// the same user. Here nobody runs a real supervisor on their own data directory,
    /// and root's CLI is pointed at its socket.
    @Test func theAdminClientSendsNothingToAnotherUsersSupervisor() throws {
        let nobody = try Self.nobody()
        let group = try #require(getpwnam("nobody")).pointee.pw_gid
        let host = try Self.makeHost()
        defer { host.stop() }
        let data = host.data
        #expect(mkdir(data.root, 0o700) == 0)
        #expect(chown(data.root, nobody, group) == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid", "\(nobody)", "--regid", "\(group)", "--clear-groups", host.binary, "serve",
                             "--cohorts", host.cohorts, "--data", data.root, "--api", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                             "--ingress", "off"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            if waitFor(timeout: 10, { !process.isRunning }) == nil { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let listening = waitFor(timeout: 20, interval: 0.05) { FileManager.default.fileExists(atPath: data.adminSocket) }
        try #require(listening != nil, "nobody's supervisor did not start")
        // The CLI's own check, before it sends anything.
        let answer = try HostHarness.cli(binary: host.binary, ["status", "--data", data.root])
        #expect(answer.status != 0)
        // The CLI refuses nobody's directory before it reaches the socket; its socket
        // check (the served-by-uid refusal) stands behind that one.
        #expect(answer.output.contains("\(data.adminSocket) is served by uid \(nobody), not by you (uid 0)")
            || answer.output.contains("is owned by uid \(nobody), not by you (uid 0)"), "\(answer.output)")
    }

    // MARK: The store

    /// The store path is a link to another live instance's store: neither a
    /// break-glass freeze nor a start may write into that one.
    @Test func aStoreThatIsALinkToAnotherInstancesStoreIsRefused() throws {
        _ = try Self.nobody()
        let other = try Self.makeHost()
        defer { other.stop() }
        try other.start()
        let host = try Self.makeHost()
        defer { host.stop() }
        let data = host.data
        #expect(mkdir(data.root, 0o700) == 0)
        let otherStore = other.data.root + "/bulkhead.sqlite"
        #expect(symlink(otherStore, data.root + "/bulkhead.sqlite") == 0)

        try Self.expectRefused(host, path: data.root + "/bulkhead.sqlite", saying: "is a symbolic link", commands: [])
        // Break glass writes the host's replica: that one a link to the other's.
        unlink(data.replicaFile)
        #expect(symlink(other.data.replicaFile, data.replicaFile) == 0)
        let freeze = try host.cli(["break-glass", "freeze"])
        #expect(freeze.status != 0, "freeze went ahead: \(freeze.output)")
        #expect(freeze.output.contains("\(data.root)/host.sqlite is a symbolic link"), "\(freeze.output)")
        // The other instance is as it was: not frozen, no freeze in its audit log.
        let status = try other.cli(["break-glass", "status", "--json"])
        #expect(status.status == 0 && status.output.contains("\"frozen\":false"), "\(status.output)")
        let events = try other.cli(["events", "--json"])
        #expect(!events.output.contains("setting/frozen"), "\(events.output)")
    }

    /// The store's log, or its shared memory, is a link onto a root's file elsewhere;
    /// the other one is a plain empty file, so SQLite would open the store and write
    /// through the link.
    @Test func aStoreLogOrSharedMemoryThatIsALinkIsRefused() throws {
        _ = try Self.nobody()
        for (linked, plain) in [("-wal", "-shm"), ("-shm", "-wal")] {
            let host = try Self.makeHost()
            defer { host.stop() }
            let targets = try Targets(under: host.root)
            let data = host.data
            #expect(mkdir(data.root, 0o700) == 0)
            // A sound store of this data directory, closed.
            try SQLiteStore(dataDirectory: data).close()
            let store = data.root + "/bulkhead.sqlite"
            unlink(store + "-wal")
            unlink(store + "-shm")
            #expect(symlink(targets.emptyFile, store + linked) == 0)
            #expect(FileManager.default.createFile(atPath: store + plain, contents: nil, attributes: [.posixPermissions: 0o600]))
            let storeBytes = Self.bytes(store)

            // Break glass writes the host's replica: the same links there.
            try HostReplica(dataDirectory: data).close()
            let replica = data.replicaFile
            unlink(replica + "-wal")
            unlink(replica + "-shm")
            #expect(symlink(targets.emptyFile, replica + linked) == 0)
            #expect(FileManager.default.createFile(atPath: replica + plain, contents: nil, attributes: [.posixPermissions: 0o600]))
            let replicaBytes = Self.bytes(replica)
            let freeze = try host.cli(["break-glass", "freeze"])
            #expect(freeze.status != 0, "freeze went ahead: \(freeze.output)")
            #expect(freeze.output.contains("\(replica)\(linked) is a symbolic link"), "\(freeze.output)")
            targets.expectUnchanged("\(linked) a link, after break-glass freeze")
            #expect(Self.bytes(replica) == replicaBytes, "the refused replica was written")
            // The replica sound again: serve gets as far as the store.
            for suffix in ["", "-wal", "-shm"] { unlink(replica + suffix) }
            try Self.expectRefused(host, path: store + linked, saying: "is a symbolic link", commands: [])
            targets.expectUnchanged("\(linked) a link, after serve")
            #expect(Self.bytes(store) == storeBytes, "the refused store was written")
        }
    }

    // MARK: What must keep working

    /// A data directory reached through a link (./.bulkhead pointing elsewhere) is
    /// fine: the real directory is checked and used.
    @Test func aDataDirectoryReachedThroughALinkServes() throws {
        _ = try Self.nobody()
        let host = try Self.makeHost()
        defer { host.stop() }
        let real = host.root + "/real-data"
        #expect(mkdir(real, 0o700) == 0)
        #expect(symlink(real, host.data.root) == 0)
        try host.start()
        #expect(try host.cli(["status"]).status == 0)
        // Everything went into the real directory.
        #expect(FileManager.default.fileExists(atPath: real + "/bulkhead.sqlite"))
        #expect(FileManager.default.fileExists(atPath: real + "/run/admin.sock"))
        var info = stat()
        #expect(lstat(real + "/run", &info) == 0 && info.st_mode & 0o777 == 0o700)
    }
}
