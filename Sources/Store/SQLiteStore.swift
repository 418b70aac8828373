import BulkheadCore
import Foundation
import GRDB

/// The embedded store: one SQLite file (`DATA/bulkhead.sqlite`) through a GRDB
/// `DatabasePool` in WAL mode.
///
/// - Durability: `synchronous = FULL`, so a call that returned is on disk; an upload
///   acknowledged with 201 survives `kill -9` (and a power cut) right after.
/// - Integrity: `foreign_keys = ON`, STRICT tables, and checks on open: a file that is
///   not a bulkhead store, is truncated or corrupt, or comes from a newer schema is
///   refused with an error naming it, and left untouched. A missing file is created.
/// - Concurrency: safe from many threads; writes are serialized by the pool's single
///   writer connection, and across processes (the break-glass CLI beside the
///   supervisor) by SQLite's lock, waited for up to the busy timeout.
public final class SQLiteStore: BulkheadStore {
    /// The database file, absolute.
    public let path: String

    /// The GRDB pool: one writer connection, several readers.
    let pool: DatabasePool

    /// The time stamped on rows and audit events.
    let clock: @Sendable () -> Date

    /// The largest script source or artifact content accepted.
    let maximumContentBytes: Int

    /// Opens (or creates) the store of a data directory: `DATA/bulkhead.sqlite`.
    public convenience init(dataDirectory: DataDirectory, configuration: SQLiteStoreConfiguration = .init()) throws {
        try self.init(path: dataDirectory.storeFile, configuration: configuration)
    }

    /// Opens the store at `path`, creating it (and its directory) when missing, unless
    /// `configuration.createIfMissing` is false: then a missing store is a
    /// ``StoreError`` of kind ``StoreError/Kind/notFound`` naming the path.
    ///
    /// Throws a ``StoreError`` naming the file when it is not a bulkhead store, is
    /// truncated or corrupt (`PRAGMA quick_check`), or was written by a newer schema.
    public init(path: String, configuration: SQLiteStoreConfiguration = .init()) throws {
        guard configuration.busyTimeoutSeconds >= 0, configuration.maximumReaderCount >= 1 else {
            throw StoreError.invalidArgument(
                "store configuration: busyTimeoutSeconds must be 0 or more and maximumReaderCount 1 or more")
        }
        guard configuration.maximumContentBytes >= 1 else {
            throw StoreError.invalidArgument("store configuration: maximumContentBytes must be 1 or more")
        }
        if let pages = configuration.maximumPageCount, pages < 1 {
            throw StoreError.invalidArgument("store configuration: maximumPageCount must be 1 or more, got \(pages)")
        }
        let path = Self.absolute(path)
        // Checked before anything touches the disk: a refused open creates neither
        // the file nor its directory.
        if !configuration.createIfMissing && !FileManager.default.fileExists(atPath: path) {
            throw StoreError.missingStore(path: path)
        }
        self.path = path
        self.clock = configuration.clock
        self.maximumContentBytes = configuration.maximumContentBytes
        self.pool = try Self.open(path: path, configuration: configuration)
    }

    /// Closes the database connections. Later calls fail; `deinit` closes too.
    public func close() throws {
        do {
            try pool.close()
        } catch {
            throw translate(error, "close the store")
        }
    }

    /// The settings SQLite applied, for `bulkhead status` and for tests.
    public func diagnostics() throws -> SQLiteStoreDiagnostics {
        try writeWithoutTransaction("read the store's settings") { db in
            // Read on the writer connection: journal mode, synchronous and the page
            // cap are per connection, and the writer is the one that matters.
            SQLiteStoreDiagnostics(
                journalMode: try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "",
                synchronous: try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1,
                foreignKeys: (try Int.fetchOne(db, sql: "PRAGMA foreign_keys") ?? 0) == 1,
                pageSize: try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0,
                pageCount: try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0,
                maximumPageCount: try Int.fetchOne(db, sql: "PRAGMA max_page_count") ?? 0,
                migrations: try StoreSchema.migrator.appliedMigrations(db))
        }
    }

    // MARK: - Helpers for the entity extensions

    /// A TEXT column of a row that selected it `CAST(column AS BLOB)`, whole. GRDB
    /// binds a String as a C string (length -1) and reads TEXT back as one, which cut
    /// a script or artifact at its first NUL byte, a byte Lua reads fine inside a
    /// string literal; so such columns go in as `CAST(? AS TEXT)` of the bytes and
    /// come back as a blob.
    static func wholeText(_ row: Row, column: String) throws -> String {
        String(decoding: try row.decode(Data.self, forColumn: column), as: UTF8.self)
    }

    /// Runs `body` in one write transaction (IMMEDIATE: GRDB takes the write lock
    /// first, so a concurrent process cannot make it fail half-way with SQLITE_BUSY);
    /// any error rolls it back whole. `operation` completes "could not …".
    func write<T>(_ operation: @autoclosure () -> String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.write(body)
        } catch {
            throw translate(error, operation())
        }
    }

    /// Runs `body` in one read transaction: a consistent snapshot, never blocked by the writer.
    func read<T>(_ operation: @autoclosure () -> String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch {
            throw translate(error, operation())
        }
    }

    private func writeWithoutTransaction<T>(_ operation: @autoclosure () -> String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.writeWithoutTransaction(body)
        } catch {
            throw translate(error, operation())
        }
    }

    /// A ``StoreError`` for any error out of GRDB or the store's own code.
    func translate(_ error: any Error, _ operation: String) -> StoreError {
        Self.translate(error, path: path, operation: operation)
    }

    static func translate(_ error: any Error, path: String, operation: String) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as DatabaseError:
            let message = error.message ?? "\(error)"
            switch error.resultCode {
            case .SQLITE_FULL:
                return .diskFull(path: path, operation: operation)
            case .SQLITE_BUSY, .SQLITE_LOCKED:
                return .busy(path: path, operation: operation, message: message)
            case .SQLITE_CORRUPT, .SQLITE_NOTADB:
                return .database(
                    path: path, operation: operation, code: error.resultCode.rawValue, message: message, damaged: true)
            default:
                return .database(
                    path: path, operation: operation, code: error.resultCode.rawValue, message: message, damaged: false)
            }
        case let error as RowDecodingError:
            return .unreadable(path: path, what: "a row", detail: "\(error)")
        case let error as UnreadableValue:
            return .unreadable(path: path, what: error.what, detail: error.detail)
        default:
            return .database(path: path, operation: operation, code: -1, message: "\(error)", damaged: false)
        }
    }

    /// The current time, for rows and audit events.
    func now() -> Date {
        clock()
    }

    /// Appends an audit row inside the caller's transaction, so the change and its
    /// record commit together or not at all.
    @discardableResult
    func insertAudit(
        _ db: Database, at: Date, actor: String, action: AuditAction, subject: String, detail: AuditDetail
    ) throws -> AuditEvent {
        try insertAudit(db, at: at, actor: actor, action: action, subject: subject, detailJSON: try detail.json())
    }

    /// Appends an audit row whose detail is already a JSON text.
    func insertAudit(
        _ db: Database, at: Date, actor: String, action: AuditAction, subject: String, detailJSON: String
    ) throws -> AuditEvent {
        try db.execute(
            sql: "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
            arguments: [at, actor, action.rawValue, subject, detailJSON])
        return AuditEvent(
            id: Int(db.lastInsertedRowID), at: at, actor: actor, action: action, subject: subject, detail: detailJSON)
    }

    // MARK: - Argument checks

    func checkName(_ what: String, _ value: String) throws {
        try StoreArguments.checkName(what, value)
    }

    func checkActor(_ actor: String) throws {
        try StoreArguments.checkActor(actor)
    }

    /// Refuses a script or artifact larger than the store takes, before any hashing.
    func checkContentSize(_ what: String, _ content: String) throws {
        try StoreArguments.checkContentSize(what, content, maximum: maximumContentBytes)
    }

    private static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// What SQLite applied to the store's writer connection.
public struct SQLiteStoreDiagnostics: Sendable, Equatable {
    /// `wal` when the store works as designed.
    public var journalMode: String
    /// SQLite's `synchronous` level: 2 is FULL, what the store sets.
    public var synchronous: Int
    /// Whether foreign keys are enforced.
    public var foreignKeys: Bool
    /// Bytes per page.
    public var pageSize: Int
    /// Pages in use.
    public var pageCount: Int
    /// The page cap (`max_page_count`).
    public var maximumPageCount: Int
    /// Schema migrations applied, in order.
    public var migrations: [String]
}
