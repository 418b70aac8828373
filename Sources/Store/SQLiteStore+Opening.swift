import BulkheadCore
import Foundation
import GRDB

// MARK: - Opening, creating and checking the database file

extension SQLiteStore {
    /// Opens the pool on `path`: creates a missing store, refuses a damaged or foreign
    /// one untouched, then applies the durability settings and pending migrations.
    static func open(
        path: String, configuration: SQLiteStoreConfiguration, schema: any SQLiteSchema.Type = StoreSchema.self
    ) throws -> DatabasePool {
        let operation = "open the store"
        try checkOwnFiles(of: path)
        try createDirectory(containing: path)
        if !FileManager.default.fileExists(atPath: path) {
            try createStore(at: path, configuration: configuration, schema: schema)
        }
        try SQLiteFileHeader.check(path: path, applicationID: schema.applicationID)
        try SQLiteFileHeader.checkLog(of: path)
        try checkContents(of: path, configuration: configuration, schema: schema)
        do {
            let pool = try DatabasePool(path: path, configuration: connectionConfiguration(configuration, label: "store"))
            try pool.writeWithoutTransaction { db in
                // GRDB sets synchronous = NORMAL when it turns WAL on, and NORMAL may lose
                // the last commits on a power cut. FULL syncs the log at every commit: a
                // call that returned (an upload answered 201) is on disk.
                try db.execute(sql: "PRAGMA synchronous = FULL")
                if let pages = configuration.maximumPageCount {
                    // Per connection: only the writer grows the file.
                    try db.execute(sql: "PRAGMA max_page_count = \(pages)")
                }
            }
            // Brings a store made by an older build up to date; a no-op otherwise.
            try schema.migrator.migrate(pool)
            return pool
        } catch {
            throw openError(error, path: path, operation: operation)
        }
    }

    /// GRDB settings shared by every connection the store opens.
    static func connectionConfiguration(_ configuration: SQLiteStoreConfiguration, label: String) -> Configuration {
        var grdb = Configuration()
        grdb.label = "bulkhead.\(label)"
        grdb.foreignKeysEnabled = true
        grdb.busyMode = .timeout(configuration.busyTimeoutSeconds)
        grdb.maximumReaderCount = configuration.maximumReaderCount
        return grdb
    }

    /// Refuses the store when its file, its log or its shared memory is a symbolic
    /// link, not a regular file, another user's or writable by others.
    ///
    /// Why: SQLite follows links, so a store path linked to another instance's live
    /// store would take this host's writes (a break-glass freeze, say) into that one.
    /// Checked before anything is created: a refused store is left as it was.
    private static func checkOwnFiles(of path: String) throws {
        for file in [path, path + "-wal", path + "-shm", path + "-journal"] {
            do {
                try OwnedFile.check(file, is: .regularFile)
            } catch {
                throw StoreError.cannotOpen(path: path, error.description)
            }
        }
    }

    private static func createDirectory(containing path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            // 0700: the directory holds tokens and sockets besides the store.
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StoreError.cannotOpen(path: path, "cannot create its directory: \(error.localizedDescription)")
        }
    }

    /// Creates a new store whole under a temporary name, then links it into place.
    ///
    /// Why not create it in place: a crash half-way would leave a file at `path` that
    /// the next start could not tell from a damaged store. Linking (not renaming) never
    /// replaces a store another process created meanwhile: then that one is used.
    private static func createStore(
        at path: String, configuration: SQLiteStoreConfiguration, schema: any SQLiteSchema.Type
    ) throws {
        if FileSystem.hasWALFrames(path + "-wal") {
            // Starting empty here would let SQLite replay someone else's log into it.
            throw StoreError.orphanedLog(path: path)
        }
        let temporary = path + ".creating-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        defer {
            FileSystem.remove(temporary)
            FileSystem.remove(temporary + "-journal")
        }
        do {
            var grdb = connectionConfiguration(configuration, label: "store.create")
            grdb.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            let queue = try DatabaseQueue(path: temporary, configuration: grdb)
            try schema.migrator.migrate(queue)
            try queue.close()
            // 0600: the store holds token hashes. SQLite gives its -wal and -shm files
            // the mode of the database file.
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: temporary)
        } catch {
            throw translate(error, path: path, operation: "create the store")
        }
        // false: another process created the store meanwhile; use that one.
        if try FileSystem.linkWithoutReplacing(temporary, to: path) {
            FileSystem.syncDirectory(containing: path)
        }
    }

    /// Opens the file with a read-only connection, and refuses it unless it is a sound
    /// bulkhead store of a schema this build knows.
    ///
    /// Why read-only: closing the last read-write connection to a WAL database
    /// checkpoints the log into the file and deletes the log. On a damaged store that
    /// would write into the file being refused and throw away the newest commits,
    /// which may live only in the log.
    private static func checkContents(
        of path: String, configuration: SQLiteStoreConfiguration, schema: any SQLiteSchema.Type
    ) throws {
        // A read-only connection to a WAL database creates an empty log and its index
        // when they are missing, and SQLite leaves them behind when a damaged page
        // fails the read itself (not only quick_check). A refused store is left as it
        // was: what this check created, empty, goes again. (Nobody else has the file
        // open in WAL mode when its log is missing: a connection would have made one.)
        let hadLog = FileManager.default.fileExists(atPath: path + "-wal")
        let hadIndex = FileManager.default.fileExists(atPath: path + "-shm")
        do {
            try readContents(of: path, configuration: configuration, schema: schema)
        } catch {
            let logSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? nil
            if !hadLog && logSize == 0 {
                FileSystem.remove(path + "-wal")
                if !hadIndex { FileSystem.remove(path + "-shm") }
            }
            throw error
        }
    }

    private static func readContents(
        of path: String, configuration: SQLiteStoreConfiguration, schema: any SQLiteSchema.Type
    ) throws {
        do {
            var grdb = connectionConfiguration(configuration, label: "store.check")
            grdb.readonly = true
            let queue = try DatabaseQueue(path: path, configuration: grdb)
            defer { try? queue.close() }
            try queue.read { db in
                let applicationID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
                guard applicationID == schema.applicationID else {
                    throw StoreError.notBulkhead(path: path, applicationID: applicationID)
                }
                // quick_check reads every page and checks the b-trees' structure, in time
                // linear in the file: fine for a store of scripts and settings.
                let findings = try String.fetchAll(db, sql: "PRAGMA quick_check(6)")
                guard findings == ["ok"] else {
                    // The first finding starts with a heading line ("*** in database main
                    // ***") that says nothing; keep the lines that name pages and rows.
                    let problems = findings.flatMap { $0.split(separator: "\n") }
                        .map { $0.trimmingCharacters(in: .whitespaces) }
                        .filter { !$0.isEmpty && !$0.hasPrefix("***") }
                        .prefix(5)
                    throw StoreError.corrupt(path: path, "PRAGMA quick_check found: " + problems.joined(separator: "; "))
                }
                let known = Set(schema.knownMigrations)
                let unknown = try schema.migrator.appliedIdentifiers(db).subtracting(known)
                guard unknown.isEmpty else {
                    throw StoreError.newerSchema(path: path, unknownMigrations: unknown.sorted())
                }
            }
        } catch {
            throw openError(error, path: path, operation: "check the store")
        }
    }

    /// Errors while opening: SQLite's "corrupt" and "not a database" become
    /// ``StoreError`` cases that name the file and say what to do.
    static func openError(_ error: any Error, path: String, operation: String) -> StoreError {
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_CORRUPT:
                return .corrupt(path: path, "SQLite reports: \(error.message ?? "database disk image is malformed")")
            case .SQLITE_NOTADB:
                return .corrupt(path: path, "SQLite reports: \(error.message ?? "file is not a database")")
            default:
                break
            }
        }
        return translate(error, path: path, operation: operation)
    }
}
