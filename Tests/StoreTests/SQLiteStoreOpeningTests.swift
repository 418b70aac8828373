import BulkheadCore
import Foundation
import GRDB
import Store
import Testing

/// Opening, reopening, and refusing files that are not a sound bulkhead store.
@Suite struct SQLiteStoreOpeningTests {
    /// Fills a store with one of everything, then closes it.
    private func populate(_ directory: TemporaryDirectory) throws {
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 1", actor: "customer:acme")
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 2", actor: "customer:acme")
        _ = try store.rollbackScript(customer: "acme", name: "hello", to: nil, actor: "customer:acme")
        _ = try store.putScriptVersion(customer: "acme", name: "gone", source: "-- x", actor: "customer:acme")
        try store.deleteScript(customer: "acme", name: "gone", actor: "customer:acme")
        _ = try store.putArtifact(kind: .rules, content: #"{"rules": []}"#, actor: "admin")
        _ = try store.createRollout(kind: .rules, version: 1, fromVersion: 0, status: "running", state: Data("{}".utf8), actor: "admin")
        try store.setSetting(SettingKey.frozen, to: "true", actor: "break-glass")
        try store.close()
    }

    private func contents(of path: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path))
    }

    private func open(_ path: String) throws -> SQLiteStore {
        try SQLiteStore(path: path)
    }

    @Test func aMissingFileIsCreatedWithDurableSettings() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/nested/data/bulkhead.sqlite"
        let store = try open(path)
        let diagnostics = try store.diagnostics()
        #expect(store.path == path)
        #expect(diagnostics.journalMode == "wal")
        #expect(diagnostics.synchronous == 2)  // FULL
        #expect(diagnostics.foreignKeys)
        #expect(diagnostics.migrations == ["v1-initial", "v2-change-feed", "v3-script-deployments"])
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // Created under a temporary name and linked into place: nothing else is left.
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/nested/data")
        #expect(!names.contains { $0.contains(".creating-") })
    }

    @Test func theDataDirectoryNamesTheFile() throws {
        let directory = try TemporaryDirectory()
        let data = DataDirectory(directory.path)
        let store = try SQLiteStore(dataDirectory: data)
        #expect(store.path == directory.path + "/bulkhead.sqlite")
        #expect(data.storeFile == store.path)
    }

    @Test func reopeningKeepsEverything() throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        let store = try open(directory.storePath)
        #expect(try store.customer(withTokenHash: hash("acme"))?.cohort == "pro")
        #expect(try store.scripts(ofCustomer: "acme").map(\.name) == ["hello"])
        #expect(try store.script(customer: "acme", name: "hello")?.activeVersion == 1)
        #expect(try store.scriptVersions(customer: "acme", name: "hello").map(\.version) == [1, 2])
        #expect(try store.scriptSource(customer: "acme", name: "hello", version: 2).source == "-- 2")
        #expect(try store.latestArtifact(kind: .rules)?.content == #"{"rules": []}"#)
        #expect(try store.runningRollout(kind: .rules)?.state == Data("{}".utf8))
        #expect(try store.legacyFrozen())
        #expect(try store.latestAuditEventID() == 9)
        // Numbering continues where it stopped.
        #expect(try store.putScriptVersion(customer: "acme", name: "gone", source: "-- y", actor: "c").version == 2)
        #expect(try store.putArtifact(kind: .rules, content: "{}", actor: "admin").version == 2)
        #expect(try store.appendAudit(actor: "admin", action: AuditAction("test"), subject: "host", detail: "{}").id == 12)
    }

    @Test func aStoreFromBeforeDeploymentsIsMigratedAndKeepsEverything() throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        // Back to the schema of a build before deployments.
        let raw = try DatabaseQueue(path: directory.storePath)
        try raw.write { db in
            try db.execute(sql: """
                DROP TABLE script_deployments;
                ALTER TABLE scripts DROP COLUMN split_deployment;
                ALTER TABLE scripts DROP COLUMN split_version;
                ALTER TABLE scripts DROP COLUMN split_percent;
                ALTER TABLE scripts DROP COLUMN split_key_header;
                DELETE FROM grdb_migrations WHERE identifier = 'v3-script-deployments';
                """)
        }
        try raw.close()

        let store = try open(directory.storePath)
        #expect(try store.diagnostics().migrations.last == "v3-script-deployments")
        #expect(try store.scriptVersions(customer: "acme", name: "hello").map(\.version) == [1, 2])
        #expect(try store.activeScripts().map(\.spec.split) == [nil])
        #expect(try store.putScriptVersionInactive(customer: "acme", name: "hello", source: "-- 3", actor: "c").version == 3)
        let deployment = try store.createDeployment(
            customer: "acme", name: "hello", version: 3, keyHeader: nil, percent: 50, status: "running", state: Data(),
            actor: "admin")
        #expect(deployment.id == 1 && deployment.fromVersion == 1)
        #expect(try store.activeScripts().first?.spec.split?.source == "-- 3")
    }

    @Test func anAcknowledgedUploadIsInTheFilesBeforeTheStoreCloses() throws {
        // What `kill -9` leaves: the database and its write-ahead log as they are on
        // disk, with no close, no checkpoint. Copy them aside while the store is open.
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
        let put = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- acknowledged", actor: "c")

        let crashed = try TemporaryDirectory()
        for suffix in ["", "-wal"] {
            try FileManager.default.copyItem(atPath: directory.storePath + suffix, toPath: crashed.storePath + suffix)
        }
        let recovered = try open(crashed.storePath)
        #expect(try recovered.scriptSource(customer: "acme", name: "hello", version: nil).version == put)
        #expect(try recovered.scriptSource(customer: "acme", name: "hello", version: nil).source == "-- acknowledged")
        _ = store
    }

    @Test func garbageOverTheHeaderIsRefused() throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: directory.storePath))
        try handle.write(contentsOf: Data(repeating: 0x5a, count: 100))
        try handle.close()
        let before = try contents(of: directory.storePath)

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        #expect(error?.description.contains(directory.storePath) == true)
        #expect(error?.description.contains("is not an SQLite database") == true)
        #expect(try contents(of: directory.storePath) == before)
    }

    @Test(arguments: [0.5, 0.9])
    func aTruncatedFileIsRefused(keeping fraction: Double) throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        let full = try contents(of: directory.storePath)
        let kept = full.prefix(Int(Double(full.count) * fraction))
        try kept.write(to: URL(fileURLWithPath: directory.storePath))

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        #expect(error?.description.hasPrefix("\(directory.storePath) is truncated") == true)
        #expect(error?.description.contains("will not start empty") == true)
        #expect(try contents(of: directory.storePath) == kept)
    }

    @Test(arguments: [0, 10, 60])
    func aFileCutInsideItsHeaderIsRefused(keeping bytes: Int) throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        try contents(of: directory.storePath).prefix(bytes).write(to: URL(fileURLWithPath: directory.storePath))

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        #expect(error?.description.hasPrefix("\(directory.storePath) is truncated") == true)
        #expect(try contents(of: directory.storePath).count == bytes)
    }

    @Test func pagesOverwrittenBehindTheHeaderAreRefused() throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        // Keep the header page, so that only SQLite can see the damage.
        var bytes = try contents(of: directory.storePath)
        let pageSize = 4096
        #expect(bytes.count > 2 * pageSize)
        for index in pageSize..<bytes.count { bytes[index] = UInt8(truncatingIfNeeded: index &* 31) }
        try bytes.write(to: URL(fileURLWithPath: directory.storePath))

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        #expect(error?.description.hasPrefix("\(directory.storePath) is corrupt") == true)
        #expect(try contents(of: directory.storePath) == bytes)
    }

    @Test func anyOneBadPageIsRefused() throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        // VACUUM first: no free pages, so every page belongs to a table, an index or a
        // long value, and damage to any of them must be found.
        let raw = try DatabaseQueue(path: directory.storePath)
        try raw.writeWithoutTransaction { db in try db.execute(sql: "VACUUM") }
        try raw.close()
        let pristine = try contents(of: directory.storePath)
        let pageSize = 4096
        let pages = pristine.count / pageSize
        #expect(pages > 5)

        var foundByQuickCheck = 0
        for page in 2...pages {
            var bytes = pristine
            for index in (page - 1) * pageSize..<page * pageSize { bytes[index] = 0xff }
            try bytes.write(to: URL(fileURLWithPath: directory.storePath))
            let error = storeError { _ = try open(directory.storePath) }
            #expect(error?.kind == .damaged, "page \(page)")
            #expect(error?.description.hasPrefix("\(directory.storePath) is corrupt: ") == true, "page \(page)")
            if error?.description.contains("PRAGMA quick_check found: ") == true { foundByQuickCheck += 1 }
            #expect(try contents(of: directory.storePath) == bytes)
        }
        // Some damage SQLite stumbles on while opening; the rest only a full check finds.
        #expect(foundByQuickCheck > 0)
    }

    @Test func aTextFileIsRefused() throws {
        let directory = try TemporaryDirectory()
        let text = Data("name = \"free\"\norder = 1\n".utf8)
        try text.write(to: URL(fileURLWithPath: directory.storePath))
        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        #expect(error?.description.contains("\(directory.storePath) is not an SQLite database") == true)
        #expect(try contents(of: directory.storePath) == text)
    }

    @Test func anotherApplicationsDatabaseIsRefused() throws {
        let directory = try TemporaryDirectory()
        let other = try DatabaseQueue(path: directory.storePath)
        try other.write { db in try db.execute(sql: "CREATE TABLE notes (body TEXT)") }
        try other.close()
        let before = try contents(of: directory.storePath)

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        #expect(error?.description.contains("\(directory.storePath) is an SQLite database but not a bulkhead store") == true)
        #expect(try contents(of: directory.storePath) == before)
    }

    @Test func aNewerSchemaIsRefused() throws {
        let directory = try TemporaryDirectory()
        try populate(directory)
        let raw = try DatabaseQueue(path: directory.storePath)
        try raw.write { db in try db.execute(sql: "INSERT INTO grdb_migrations VALUES ('v7-from-the-future')") }
        try raw.close()

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .incompatible)
        #expect(error?.description.contains(directory.storePath) == true)
        #expect(error?.description.contains("v7-from-the-future") == true)
    }

    @Test func aLogWithoutItsDatabaseIsRefused() throws {
        let directory = try TemporaryDirectory()
        try Data(repeating: 0x37, count: 8192).write(to: URL(fileURLWithPath: directory.storePath + "-wal"))
        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        #expect(error?.description.contains("write-ahead log") == true)
        #expect(!FileManager.default.fileExists(atPath: directory.storePath))
    }

    @Test func aDirectoryInThePlaceOfTheFileIsRefused() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory.storePath, withIntermediateDirectories: false)
        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .unavailable)
        #expect(error?.description.contains(directory.storePath) == true)
    }
    // MARK: The write-ahead log

    /// The files `kill -9` leaves: the database and its log as they are on disk while
    /// the store is open, with the newest commits only in the log.
    private func crashedStore() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
        for version in 1...3 {
            _ = try store.putScriptVersion(
                customer: "acme", name: "hello", source: "-- \(version)\n" + String(repeating: "-- pad\n", count: 600), actor: "c")
        }
        let crashed = try TemporaryDirectory()
        for suffix in ["", "-wal"] {
            try FileManager.default.copyItem(atPath: directory.storePath + suffix, toPath: crashed.storePath + suffix)
        }
        _ = store
        return crashed
    }

    @Test func aDamagedStoreIsRefusedWithItsLogLeftAsItWas() throws {
        let directory = try crashedStore()
        let wal = try contents(of: directory.storePath + "-wal")
        #expect(wal.count > 32, "the newest commits are in the log")
        var bytes = try contents(of: directory.storePath)
        let pageSize = 4096
        for index in pageSize..<bytes.count { bytes[index] = 0xff }
        try bytes.write(to: URL(fileURLWithPath: directory.storePath))

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged)
        // Checking must not checkpoint the log into the damaged file, nor delete it.
        #expect(try contents(of: directory.storePath) == bytes)
        #expect(try contents(of: directory.storePath + "-wal") == wal)
    }

    @Test(arguments: ["garbage over the whole log", "a zeroed header", "a header whose checksum fails", "a log cut inside its header"])
    func aLogWithABadHeaderIsRefused(what: String) throws {
        let directory = try crashedStore()
        let main = try contents(of: directory.storePath)
        var wal = try contents(of: directory.storePath + "-wal")
        switch what {
        case "garbage over the whole log": for index in wal.indices { wal[index] = UInt8(truncatingIfNeeded: index &* 7) }
        case "a zeroed header": for index in 0..<32 { wal[index] = 0 }
        case "a header whose checksum fails": wal[16] ^= 0x01
        default: wal = wal.prefix(20)
        }
        try wal.write(to: URL(fileURLWithPath: directory.storePath + "-wal"))

        let error = storeError { _ = try open(directory.storePath) }
        #expect(error?.kind == .damaged, "\(what)")
        #expect(error?.description.hasPrefix("\(directory.storePath)-wal, the write-ahead log of \(directory.storePath), is damaged") == true,
                "\(what): \(error?.description ?? "no error")")
        #expect(error?.description.contains("may hold the newest changes") == true)
        #expect(try contents(of: directory.storePath) == main, "\(what): the store is untouched")
        #expect(try contents(of: directory.storePath + "-wal") == wal, "\(what): the log is untouched")
    }

    @Test func aSoundLogIsReplayed() throws {
        let directory = try crashedStore()
        let store = try open(directory.storePath)
        #expect(try store.scriptVersions(customer: "acme", name: "hello").map(\.version) == [1, 2, 3])
    }
}
