import BulkheadCore
import Foundation
import GRDB

/// A read-only connection to a control store that a host agent follows: whether it
/// changed (cheap), the changes after a revision, and only the rows they name.
///
/// Why a connection of its own, read-only: reading never takes or waits for the
/// store's write lock (WAL readers read the last commit), so a writer that holds it
/// (a stopped control process, a long write) cannot stall the supervisor; the busy
/// timeout is short, and a busy store is simply "no news" until the next look.
/// Not thread-safe: one owner (the supervisor's queue) calls it.
public final class ChangeFeedReader {
    /// The control store file, absolute.
    public let path: String
    private let queue: DatabaseQueue
    /// The file's identity when opened: a store replaced under the same name (restored
    /// from a backup) is read through a new connection.
    private let identity: (device: UInt64, inode: UInt64)?

    /// Opens `path` read-only. Throws a ``StoreError`` when it is missing, not a
    /// bulkhead store, damaged, or of a schema without the change feed.
    public init(path: String, busyTimeoutSeconds: Double = 0.05) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError.missingStore(path: path) }
        try SQLiteFileHeader.check(path: path)
        identity = Self.inode(of: path)
        do {
            var configuration = SQLiteStore.connectionConfiguration(SQLiteStoreConfiguration(), label: "store.feed")
            configuration.readonly = true
            configuration.busyMode = .timeout(busyTimeoutSeconds)
            queue = try DatabaseQueue(path: path, configuration: configuration)
            _ = try queue.read { db in try SQLiteStore.feedBounds(db) }
        } catch {
            throw SQLiteStore.openError(error, path: path, operation: "follow the change feed")
        }
    }

    /// Whether the file at ``path`` is still the one this connection reads.
    public var isCurrentFile: Bool {
        guard let identity, let now = Self.inode(of: path) else { return false }
        return identity == now
    }

    /// Device and inode only: every commit changes the file's size and times.
    private static func inode(of path: String) -> (device: UInt64, inode: UInt64)? {
        FileIdentity(path: path).map { ($0.device, $0.inode) }
    }

    /// SQLite's `PRAGMA data_version` of this connection: it changes when another
    /// connection commits, and costs no read of the database.
    public func dataVersion() throws -> Int {
        do {
            return try queue.inDatabase { db in try Int.fetchOne(db, sql: "PRAGMA data_version") ?? 0 }
        } catch {
            throw SQLiteStore.translate(error, path: path, operation: "look for changes")
        }
    }

    /// The changes after `revision` (at most `limit`) and the rows they name, from one
    /// snapshot; or, when the feed cannot bring `revision` up to date (pruned past it,
    /// or the store is older than the replica), every customer and active script.
    public func update(after revision: Int?, limit: Int = 10_000) throws -> FeedRead {
        try SQLiteStore.checkFeedLimit(limit)
        do {
            return try queue.read { db in
                let bounds = try SQLiteStore.feedBounds(db)
                guard let revision, bounds.canCatchUp(from: revision) else {
                    return try Self.fullCopy(db, bounds: bounds)
                }
                let entries = try SQLiteStore.changes(db, after: revision, limit: limit)
                var update = ReplicaUpdate(revision: entries.last?.revision ?? revision, isFullCopy: false)
                var customers: Set<String> = []
                var scripts: Set<ScriptAddress> = []
                for entry in entries {
                    switch entry.change {
                    case .customer(let name): customers.insert(name)
                    case .script(let customer, let name): scripts.insert(ScriptAddress(customer: customer, name: name))
                    case .activeArtifact, .rollout, .setting: break
                    }
                }
                for name in customers.sorted() {
                    if let cohort = try String.fetchOne(db, sql: "SELECT cohort FROM customers WHERE name = ?", arguments: [name]) {
                        update.customers[name] = cohort
                    } else {
                        update.removedCustomers.append(name)
                    }
                }
                for script in scripts.sorted() {
                    if let active = try Self.activeScript(db, script) {
                        update.scripts.append(active)
                    } else {
                        update.removedScripts.append(script)
                    }
                }
                try Self.readStageChanges(db, changes: entries.map(\.change), into: &update)
                return FeedRead(bounds: bounds, entries: entries, update: update, scriptsRead: scripts.count)
            }
        } catch {
            throw SQLiteStore.translate(error, path: path, operation: "read the change feed")
        }
    }

    /// Closes the connection.
    public func close() {
        try? queue.close()
    }

    /// The store's own select: the active version, and the split with the candidate's source.
    private static let activeSelect = SQLiteStore.activeScriptSelect

    private static func activeScript(_ db: Database, _ script: ScriptAddress) throws -> ActiveScript? {
        try Row.fetchOne(db, sql: activeSelect + " AND s.customer = ? AND s.name = ?", arguments: [script.customer, script.name])
            .map(ActiveScript.init(row:))
    }

    private static func fullCopy(_ db: Database, bounds: FeedBounds) throws -> FeedRead {
        var update = ReplicaUpdate(revision: bounds.latest, isFullCopy: true)
        for row in try Row.fetchAll(db, sql: "SELECT name, cohort FROM customers") {
            update.customers[try row.decode(String.self, forColumn: "name")] = try row.decode(String.self, forColumn: "cohort")
        }
        update.scripts = try Row.fetchAll(db, sql: activeSelect + " ORDER BY s.customer, s.name").map(ActiveScript.init(row:))
        try readStageChanges(db, changes: try allStageChanges(db), into: &update)
        return FeedRead(bounds: bounds, entries: [], update: update, scriptsRead: update.scripts.count)
    }
}

/// What one look at the change feed found.
public struct FeedRead: Sendable {
    /// Where the feed stood.
    public var bounds: FeedBounds
    /// The changes read, oldest first (none for a full copy).
    public var entries: [FeedEntry]
    /// The rows to apply to the replica.
    public var update: ReplicaUpdate
    /// Script rows read from the control store (with their sources).
    public var scriptsRead: Int

    /// Creates a value.
    public init(bounds: FeedBounds, entries: [FeedEntry], update: ReplicaUpdate, scriptsRead: Int) {
        self.bounds = bounds
        self.entries = entries
        self.update = update
        self.scriptsRead = scriptsRead
    }
}

extension ActiveScript {
    /// A row of `SQLiteStore.activeScriptSelect`.
    init(row: Row) throws {
        let customer = try row.decode(String.self, forColumn: "customer")
        let name = try row.decode(String.self, forColumn: "name")
        var split: ScriptSplit?
        if let deployment = try row.decode(Int?.self, forColumn: "split_deployment"),
            let percent = try row.decode(Double?.self, forColumn: "split_percent"), percent > 0
        {
            let version = try row.decode(Int?.self, forColumn: "split_version")
            // The join found no candidate: a split that names a version the script does not have.
            guard let version, try row.decode(Data?.self, forColumn: "split_source") != nil else {
                throw UnreadableValue(
                    what: "the split of script \(customer)/\(name)",
                    detail: "deployment \(deployment) names version \(version.map(String.init) ?? "NULL"), which is not stored")
            }
            split = ScriptSplit(
                deployment: deployment, version: version, source: try SQLiteStore.wholeText(row, column: "split_source"),
                percent: percent, keyHeader: try row.decode(String?.self, forColumn: "split_key_header"))
        }
        self.init(
            spec: ScriptSpec(
                customer: customer, name: name,
                version: try row.decode(Int.self, forColumn: "active_version"),
                source: try SQLiteStore.wholeText(row, column: "source"),
                split: split),
            cohort: try row.decode(String.self, forColumn: "cohort"),
            sha256: try row.decode(String.self, forColumn: "sha256"),
            quarantined: try row.decode(Bool.self, forColumn: "quarantined"))
    }
}
