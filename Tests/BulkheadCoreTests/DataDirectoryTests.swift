#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

/// The checks of the data directory on real files: what `serve` creates, and each
/// thing another user could have planted, refused with the path named. Some cases
/// chown files to `nobody`, so the suite needs root, as CI runs it; elsewhere those
/// fail instead of passing unchecked.
@Suite(.serialized) struct DataDirectoryTests {
    /// A fresh directory under /tmp; `body` gets the data directory's path inside it.
    func withScratch(_ body: (String) throws -> Void) throws {
        let scratch = FileManager.default.temporaryDirectory.path + "/bulkhead-datadir-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try body(scratch)
    }

    func mode(_ path: String) -> mode_t? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    func nobody() throws -> uid_t {
        #expect(geteuid() == 0, "these checks chown files to nobody, so they must run as root")
        let entry = try #require(getpwnam("nobody"), "no user nobody")
        return entry.pointee.pw_uid
    }

    func write(_ text: String, to path: String, mode: mode_t = 0o600) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        #expect(chmod(path, mode) == 0)
    }

    func refusal(_ body: () throws -> Void) -> DataDirectoryError? {
        do {
            try body()
            return nil
        } catch let error as DataDirectoryError {
            return error
        } catch {
            Issue.record("not a DataDirectoryError: \(error)")
            return nil
        }
    }

    // MARK: What serve creates

    @Test func createMakesAPrivateTreeAndAcceptsItAgain() throws {
        try withScratch { scratch in
            let data = DataDirectory(scratch + "/deep/data")
            try data.create()
            #expect(mode(data.root) == 0o700)
            #expect(mode(data.run) == 0o700)
            #expect(mode(data.logs) == 0o700)
            // A second start, and the CLI's check, accept what the first made.
            try data.create()
            #expect(try data.verified() == data)
        }
    }

    @Test func aDataDirectoryOthersMayOnlyReadIsAccepted() throws {
        try withScratch { scratch in
            // As the test harness and many users make it: 0755, ours.
            let data = DataDirectory(scratch + "/data")
            #expect(mkdir(data.root, 0o755) == 0)
            #expect(chmod(data.root, 0o755) == 0)
            try data.create()
            #expect(mode(data.root) == 0o755)
            // An existing run/ others may read (not write) is narrowed: nothing can be in
            // it that we did not put there.
            #expect(chmod(data.run, 0o755) == 0)
            try data.create()
            #expect(mode(data.run) == 0o700)
        }
    }

    @Test func verifiedCreatesNothingAndResolvesALinkOnce() throws {
        try withScratch { scratch in
            let missing = DataDirectory(scratch + "/none")
            #expect(try missing.verified() == missing)
            #expect(mode(missing.root) == nil, "a read-only check created the directory")

            let real = DataDirectory(scratch + "/real")
            try real.create()
            #expect(symlink(real.root, scratch + "/link") == 0)
            // The link is followed once, to the real directory, which is checked and used.
            #expect(try DataDirectory(scratch + "/link").verified() == real)
            try DataDirectory(scratch + "/link").create()
        }
    }

    // MARK: The directory itself

    @Test func aDataDirectoryOfAnotherUserIsRefused() throws {
        let nobody = try nobody()
        try withScratch { scratch in
            let data = DataDirectory(scratch + "/data")
            try data.create()
            #expect(chown(data.root, nobody, gid_t(nobody)) == 0)
            let error = refusal { try data.create() }
            #expect(error == .wrongOwner(path: data.root, owner: nobody, user: 0))
            #expect(error?.description == "\(data.root) is owned by uid \(nobody), not by you (uid 0): remove it or fix its owner")
            #expect(refusal { _ = try data.verified() } == error)
            // Reached through a link, it is the real directory that counts.
            #expect(symlink(data.root, scratch + "/link") == 0)
            #expect(refusal { _ = try DataDirectory(scratch + "/link").verified() } == error)
        }
    }

    @Test func aDataDirectoryOthersMayWriteIsRefused() throws {
        try withScratch { scratch in
            let data = DataDirectory(scratch + "/data")
            try data.create()
            for writable: mode_t in [0o777, 0o1777, 0o720, 0o702] {
                #expect(chmod(data.root, writable) == 0)
                #expect(refusal { try data.create() } == .writableByOthers(path: data.root, mode: writable))
                #expect(refusal { _ = try data.verified() } == .writableByOthers(path: data.root, mode: writable))
            }
        }
    }

    // MARK: run/ and logs/

    @Test func runAndLogsMustBeOurOwnDirectoriesNeverLinks() throws {
        let nobody = try nobody()
        try withScratch { scratch in
            let elsewhere = scratch + "/elsewhere"
            try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
            for sub in ["run", "logs"] {
                let data = DataDirectory(scratch + "/data-\(sub)")
                try data.create()
                let path = data.root + "/" + sub
                try FileManager.default.removeItem(atPath: path)
                #expect(symlink(elsewhere, path) == 0)
                #expect(refusal { try data.create() } == .symbolicLink(path: path))
                #expect(refusal { _ = try data.verified() } == .symbolicLink(path: path))
                #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty, "nothing created through the link")

                #expect(unlink(path) == 0)
                #expect(mkdir(path, 0o700) == 0)
                #expect(chmod(path, 0o777) == 0)
                #expect(refusal { try data.create() } == .writableByOthers(path: path, mode: 0o777))
                #expect(mode(path) == 0o777, "a directory others may write is refused, not quietly fixed")

                #expect(chmod(path, 0o700) == 0)
                #expect(chown(path, nobody, gid_t(nobody)) == 0)
                #expect(refusal { try data.create() } == .wrongOwner(path: path, owner: nobody, user: 0))
            }
        }
    }

    @Test func plantedEntriesOfRunAndLogsAreRefused() throws {
        let nobody = try nobody()
        try withScratch { scratch in
            let target = scratch + "/precious"
            try write("root's own bytes\n", to: target, mode: 0o644)
            let data = DataDirectory(scratch + "/data")
            try data.create()

            let log = data.logs + "/free.log"
            #expect(symlink(target, log) == 0)
            #expect(refusal { try data.create() } == .symbolicLink(path: log))
            #expect(unlink(log) == 0)
            #expect(link(target, log) == 0)
            #expect(refusal { try data.create() } == .hardLinked(path: log, links: 2))
            #expect(unlink(log) == 0)

            let lock = data.run + "/supervisor.lock"
            #expect(symlink(target, lock) == 0)
            #expect(refusal { try data.create() } == .symbolicLink(path: lock))
            #expect(unlink(lock) == 0)
            try write("", to: lock)
            #expect(chown(lock, nobody, gid_t(nobody)) == 0)
            #expect(refusal { try data.create() } == .wrongOwner(path: lock, owner: nobody, user: 0))
            #expect(unlink(lock) == 0)
            try data.create()
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "root's own bytes\n")
        }
    }

    // MARK: Token files

    @Test func tokenFilesMustBeOursAndUnreadableByOthers() throws {
        let nobody = try nobody()
        try withScratch { scratch in
            let data = DataDirectory(scratch + "/data")
            try data.create()
            for path in [data.adminToken, data.demoTokens] {
                try write("bha_planted\n", to: path, mode: 0o644)
                let error = refusal { try data.create() }
                #expect(error == .readableByOthers(path: path, mode: 0o644))
                #expect(error?.description.hasPrefix("\(path) holds secrets but can be read by its group or others (mode 0644)") == true)
                #expect(chmod(path, 0o600) == 0)
                try data.create()
                #expect(chown(path, nobody, gid_t(nobody)) == 0)
                #expect(refusal { try data.create() } == .wrongOwner(path: path, owner: nobody, user: 0))
                #expect(unlink(path) == 0)
                #expect(symlink(scratch + "/somewhere", path) == 0)
                #expect(refusal { try data.create() } == .symbolicLink(path: path))
                #expect(unlink(path) == 0)
            }
        }
    }

    // MARK: Opening files

    @Test func filesAreNeverOpenedThroughALink() throws {
        try withScratch { scratch in
            let target = scratch + "/precious"
            try write("root's own bytes\n", to: target, mode: 0o600)
            let path = scratch + "/link"
            #expect(symlink(target, path) == 0)
            #expect(refusal { _ = try OwnedFile.openForAppending(path) } == .symbolicLink(path: path))
            #expect(refusal { _ = try OwnedFile.openForReading(path) } == .symbolicLink(path: path))
            #expect(refusal { try OwnedFile.create(path, contents: Array("x".utf8)) } == .symbolicLink(path: path))
            // A dangling link is not created through either.
            let dangling = scratch + "/dangling"
            #expect(symlink(scratch + "/would-be-created", dangling) == 0)
            #expect(refusal { _ = try OwnedFile.openForAppending(dangling) } == .symbolicLink(path: dangling))
            #expect(refusal { try OwnedFile.create(dangling, contents: Array("x".utf8)) } == .symbolicLink(path: dangling))
            #expect(mode(scratch + "/would-be-created") == nil)
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "root's own bytes\n")

            // What is opened is checked, not only the name: a hard link to the file.
            let hard = scratch + "/hard"
            #expect(link(target, hard) == 0)
            #expect(refusal { _ = try OwnedFile.openForAppending(hard) } == .hardLinked(path: hard, links: 2))

            // The good case: created 0600, appended to, read back.
            let own = scratch + "/own"
            try OwnedFile.create(own, contents: Array("a\n".utf8))
            #expect(mode(own) == 0o600)
            #expect(refusal { try OwnedFile.create(own, contents: Array("b".utf8)) } == .system(path: own, operation: "create", code: EEXIST))
            let appending = try OwnedFile.openForAppending(own)
            try OwnedFile.write(Array("b\n".utf8), to: appending, path: own)
            close(appending)
            let reading = try #require(try OwnedFile.openForReading(own, secret: true))
            defer { close(reading) }
            #expect(try OwnedFile.readAll(reading, path: own) == Array("a\nb\n".utf8))
            #expect(try OwnedFile.openForReading(scratch + "/missing") == nil)
        }
    }
}
