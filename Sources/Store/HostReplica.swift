import BulkheadCore
import Foundation
import GRDB

/// A script by its owner and name, as the replica and the feed address it.
public struct ScriptAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The owner.
    public var customer: String
    /// The script's name.
    public var name: String

    /// Creates a value.
    public init(customer: String, name: String) {
        self.customer = customer
        self.name = name
    }

    /// `customer/name`.
    public var description: String { "\(customer)/\(name)" }

    /// By customer, then name.
    public static func < (lhs: ScriptAddress, rhs: ScriptAddress) -> Bool {
        (lhs.customer, lhs.name) < (rhs.customer, rhs.name)
    }
}

/// A script the host quarantined for ending workers, and the version that did.
public struct ReplicaQuarantine: Sendable, Equatable {
    /// The script.
    public var script: ScriptAddress
    /// The version that was active when it was quarantined.
    public var version: Int
    /// Why, for a person.
    public var reason: String

    /// Creates a value.
    public init(script: ScriptAddress, version: Int, reason: String) {
        self.script = script
        self.version = version
        self.reason = reason
    }
}

/// Everything the replica holds that the data plane serves, read at start.
public struct ReplicaContents: Sendable, Equatable {
    /// The feed revision applied, or nil for a replica that never copied the control store.
    public var revision: Int?
    /// Customer → cohort.
    public var customers: [String: String]
    /// Every active script.
    public var scripts: [ScriptSpec]
    /// Scripts the host quarantined.
    public var quarantines: [ReplicaQuarantine]
    /// The running rollouts, as the feed last copied them.
    public var rollouts: [ReplicaRollout] = []
    /// Each pool's active artifact versions.
    public var activeVersions: [ReplicaActiveVersion] = []
}

/// Rows from the control store to apply to the replica, up to one feed revision.
public struct ReplicaUpdate: Sendable, Equatable {
    /// The revision the replica reflects once this is applied.
    public var revision: Int
    /// Replace everything (the replica was new, or fell behind the feed's pruning):
    /// customers and scripts not in this update are removed.
    public var isFullCopy: Bool
    /// Customers added or moved: name → cohort.
    public var customers: [String: String] = [:]
    /// Scripts whose active version is new (or changed in any way).
    public var scripts: [ActiveScript] = []
    /// Scripts deleted, or no longer readable as active.
    public var removedScripts: [ScriptAddress] = []
    /// Customers a change names that the store no longer has (removed): the replica
    /// drops them with every script of theirs.
    public var removedCustomers: [String] = []
    /// Rollouts created or updated that still run (one per kind).
    public var rollouts: [ReplicaRollout] = []
    /// Rollouts that ended (or are gone): the replica forgets them.
    public var endedRollouts: [Int] = []
    /// Active versions set or cleared.
    public var activeVersions: [ReplicaActiveVersion] = []
    /// Contents of the artifact versions the rows above make a slot run.
    public var artifacts: [ReplicaArtifact] = []

    /// Whether the update changes what a slot should run (rollouts, active versions).
    public var changesStages: Bool {
        isFullCopy || !rollouts.isEmpty || !endedRollouts.isEmpty || !activeVersions.isEmpty || !artifacts.isEmpty
    }

    /// Creates an update.
    public init(revision: Int, isFullCopy: Bool) {
        self.revision = revision
        self.isFullCopy = isFullCopy
    }
}

/// The host agent's replica of its data plane's state, `DATA/host.sqlite`, written
/// only by the supervisor.
///
/// It holds what the pools serve (customers and their cohorts, active scripts with
/// their sources and deployments' splits, the feed revision they reflect) and what
/// only the host decides (quarantines of scripts that ended workers, worker counts
/// set with `cohort scale`, each pool's last known good cohort), with its own
/// append-only audit log. A supervisor whose control store is unreadable or locked
/// starts and serves from it.
/// Same file rules as ``SQLiteStore``: created whole (0600), WAL, `synchronous =
/// FULL`, refused untouched when damaged, foreign or newer.
public final class HostReplica: AuditLog, KnownGoodStore, Sendable {
    /// The database file, absolute.
    public let path: String
    let pool: DatabasePool
    let clock: @Sendable () -> Date

    /// Opens (or creates) the replica of a data directory.
    public convenience init(dataDirectory: DataDirectory, configuration: SQLiteStoreConfiguration = .init()) throws {
        try self.init(path: dataDirectory.replicaFile, configuration: configuration)
    }

    /// Opens (or, unless `configuration.createIfMissing` is false, creates) the replica at `path`.
    public init(path: String, configuration: SQLiteStoreConfiguration = .init()) throws {
        let path = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        if !configuration.createIfMissing && !FileManager.default.fileExists(atPath: path) {
            throw StoreError.missingStore(path: path)
        }
        self.path = path
        self.clock = configuration.clock
        self.pool = try SQLiteStore.open(path: path, configuration: configuration, schema: ReplicaSchema.self)
    }

    /// Closes the connections.
    public func close() throws {
        do { try pool.close() } catch { throw translate(error, "close the replica") }
    }

    // MARK: - Served state

    /// The applied revision, or nil when the replica never copied the control store.
    public func appliedRevision() throws -> Int? {
        try read("read the applied revision") { db in
            try Int.fetchOne(db, sql: "SELECT revision FROM feed_state WHERE id = 1")
        }
    }

    /// Everything the data plane serves, in one snapshot.
    public func contents() throws -> ReplicaContents {
        try read("read the replica") { db in
            var customers: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, cohort FROM customers") {
                customers[try row.decode(String.self, forColumn: "name")] = try row.decode(String.self, forColumn: "cohort")
            }
            let scripts = try Row.fetchAll(
                db,
                sql: "SELECT customer, name, version, CAST(source AS BLOB) AS source, split FROM scripts ORDER BY customer, name"
            ).map { row in
                let customer = try row.decode(String.self, forColumn: "customer")
                let name = try row.decode(String.self, forColumn: "name")
                return ScriptSpec(
                    customer: customer, name: name,
                    version: try row.decode(Int.self, forColumn: "version"),
                    source: try SQLiteStore.wholeText(row, column: "source"),
                    split: try Self.decodeSplit(try row.decode(Data?.self, forColumn: "split"), of: "\(customer)/\(name)"))
            }
            var contents = ReplicaContents(
                revision: try Int.fetchOne(db, sql: "SELECT revision FROM feed_state WHERE id = 1"),
                customers: customers, scripts: scripts, quarantines: try Self.quarantines(db))
            (contents.rollouts, contents.activeVersions) = try Self.readArtifacts(db)
            return contents
        }
    }

    /// Applies `update` and records its revision, in one transaction. Returns the
    /// quarantines it lifted: a script whose version changed, or that is gone, runs
    /// new code (or none) and gets a fresh chance, as an upload gives it.
    @discardableResult
    public func apply(_ update: ReplicaUpdate, importQuarantines: Bool = false) throws -> [ScriptAddress] {
        try write("apply revision \(update.revision) to the replica") { db in
            let at = clock()
            if update.isFullCopy {
                try db.execute(sql: "DELETE FROM customers")
                try db.execute(sql: "DELETE FROM scripts")
            }
            for (name, cohort) in update.customers {
                try db.execute(
                    sql: "INSERT INTO customers (name, cohort) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET cohort = excluded.cohort",
                    arguments: [name, cohort])
            }
            for script in update.removedScripts {
                try db.execute(
                    sql: "DELETE FROM scripts WHERE customer = ? AND name = ?", arguments: [script.customer, script.name])
            }
            // A removed customer's scripts go with it, named by the feed or not: a
            // script of a customer the store no longer has must not be served.
            for name in update.removedCustomers {
                try db.execute(sql: "DELETE FROM scripts WHERE customer = ?", arguments: [name])
                try db.execute(sql: "DELETE FROM customers WHERE name = ?", arguments: [name])
            }
            for script in update.scripts {
                let spec = script.spec
                // As bytes with their length: see `SQLiteStore.wholeText(_:column:)`.
                try db.execute(
                    sql: """
                        INSERT INTO scripts (customer, name, version, source, sha256, split)
                        VALUES (?, ?, ?, CAST(? AS TEXT), ?, ?)
                        ON CONFLICT (customer, name) DO UPDATE SET
                            version = excluded.version, source = excluded.source, sha256 = excluded.sha256,
                            split = excluded.split
                        """,
                    arguments: [
                        spec.customer, spec.name, spec.version, Data(spec.source.utf8), script.sha256,
                        try spec.split.map(Self.encodeSplit),
                    ])
                if importQuarantines, script.quarantined {
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO quarantines (customer, name, version, reason, at) VALUES (?, ?, ?, ?, ?)",
                        arguments: [spec.customer, spec.name, spec.version, "quarantined before the replica existed", at])
                }
            }
            try Self.applyArtifacts(update, db)
            // A quarantine whose script is gone or runs another version is lifted.
            let lifted = try Row.fetchAll(
                db,
                sql: """
                    SELECT q.customer, q.name FROM quarantines q
                    LEFT JOIN scripts s ON s.customer = q.customer AND s.name = q.name
                    WHERE s.version IS NULL OR s.version != q.version
                    """
            ).map { row in
                ScriptAddress(customer: try row.decode(String.self, forColumn: "customer"), name: try row.decode(String.self, forColumn: "name"))
            }
            for script in lifted {
                try db.execute(
                    sql: "DELETE FROM quarantines WHERE customer = ? AND name = ?", arguments: [script.customer, script.name])
            }
            try db.execute(
                sql: """
                    INSERT INTO feed_state (id, revision, applied_at) VALUES (1, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, applied_at = excluded.applied_at
                    """,
                arguments: [update.revision, at])
            return lifted
        }
    }

    // MARK: - Host decisions

    /// Quarantines `script` at `version`, or (with `reason` nil) releases it. Audited.
    public func setQuarantine(_ script: ScriptAddress, version: Int, reason: String?, actor: String) throws {
        try write("\(reason == nil ? "release" : "quarantine") script \(script)") { db in
            let at = clock()
            if let reason {
                try db.execute(
                    sql: """
                        INSERT INTO quarantines (customer, name, version, reason, at) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (customer, name) DO UPDATE SET version = excluded.version, reason = excluded.reason, at = excluded.at
                        """,
                    arguments: [script.customer, script.name, version, reason, at])
            } else {
                try db.execute(
                    sql: "DELETE FROM quarantines WHERE customer = ? AND name = ?", arguments: [script.customer, script.name])
            }
            try insertAudit(
                db, at: at, actor: actor, action: reason == nil ? .scriptReleased : .scriptQuarantined,
                subject: "script/\(script)", detail: ["version": .int(version), "reason": .optional(reason)])
        }
    }

    /// The worker count `pool` was scaled to, or nil when its file decides.
    public func workerCount(ofPool pool: String) throws -> Int? {
        try read("read the worker count of pool \(pool)") { db in
            try Int.fetchOne(db, sql: "SELECT workers FROM worker_counts WHERE pool = ?", arguments: [pool])
        }
    }

    /// Records the worker count of `pool` (nil: back to its file's). Audited.
    public func setWorkerCount(_ workers: Int?, ofPool pool: String, actor: String) throws {
        guard ResourceName.isValid(pool) else { throw StoreError.invalidName("pool", pool) }
        if let workers, workers < 0 { throw StoreError.invalidArgument("a worker count is 0 or more, got \(workers)") }
        try write("record the worker count of pool \(pool)") { db in
            let at = clock()
            let previous = try Int.fetchOne(db, sql: "SELECT workers FROM worker_counts WHERE pool = ?", arguments: [pool])
            if let workers {
                try db.execute(
                    sql: """
                        INSERT INTO worker_counts (pool, workers, updated_at) VALUES (?, ?, ?)
                        ON CONFLICT (pool) DO UPDATE SET workers = excluded.workers, updated_at = excluded.updated_at
                        """,
                    arguments: [pool, workers, at])
            } else {
                try db.execute(sql: "DELETE FROM worker_counts WHERE pool = ?", arguments: [pool])
            }
            try insertAudit(
                db, at: at, actor: actor, action: workers == nil ? .settingCleared : .settingSet,
                subject: "setting/\(SettingKey.workers(pool: pool))",
                detail: ["value": .optional(workers), "previous": .optional(previous)])
        }
    }

    /// The pool's last known good configuration, or nil.
    public func knownGood(pool: String) throws -> KnownGoodCohort? {
        try read("read the known good configuration of pool \(pool)") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM known_good_cohorts WHERE pool = ?", arguments: [pool])
                .map(KnownGoodCohort.init(row:))
        }
    }

    /// Every pool's last known good configuration, by pool name.
    public func knownGoodCohorts() throws -> [KnownGoodCohort] {
        try read("read the known good configurations") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM known_good_cohorts ORDER BY pool").map(KnownGoodCohort.init(row:))
        }
    }

    /// Saves a pool's last known good configuration; an unchanged one is not rewritten nor audited.
    public func saveKnownGood(_ configuration: CohortConfiguration, actor: String) throws {
        let pool = configuration.name
        guard ResourceName.isValid(pool) else { throw StoreError.invalidName("pool", pool) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json: String
        do {
            json = String(decoding: try encoder.encode(configuration), as: UTF8.self)
        } catch {
            throw StoreError.invalidArgument("the configuration of pool \(pool) cannot be encoded as JSON: \(error)")
        }
        try write("save the known good configuration of pool \(pool)") { db in
            let stored = try String.fetchOne(
                db, sql: "SELECT configuration FROM known_good_cohorts WHERE pool = ?", arguments: [pool])
            guard stored != json else { return }
            let at = clock()
            try db.execute(
                sql: """
                    INSERT INTO known_good_cohorts (pool, configuration, saved_at) VALUES (?, ?, ?)
                    ON CONFLICT (pool) DO UPDATE SET configuration = excluded.configuration, saved_at = excluded.saved_at
                    """,
                arguments: [pool, json, at])
            try insertAudit(
                db, at: at, actor: actor, action: .knownGoodSaved, subject: "pool/\(pool)",
                detail: ["replaced": .bool(stored != nil)])
        }
    }

    // MARK: - AuditLog

    /// Appends an event of the host's own. `detail` must be a JSON text.
    public func appendAudit(actor: String, action: AuditAction, subject: String, detail: String) throws -> AuditEvent {
        guard (try? JSONSerialization.jsonObject(with: Data(detail.utf8), options: [.fragmentsAllowed])) != nil else {
            throw StoreError.invalidArgument("an audit event's detail must be JSON, got \(detail.prefix(80).debugDescription)")
        }
        return try write("append to the host's audit log") { db in
            try insertAudit(db, at: clock(), actor: actor, action: action, subject: subject, detailJSON: detail)
        }
    }

    /// Events after `id`, oldest first, at most `limit` (1...10000).
    public func auditEvents(after id: Int, limit: Int) throws -> [AuditEvent] {
        guard (1...10_000).contains(limit) else {
            throw StoreError.invalidArgument("an audit listing's limit is 1 to 10000, got \(limit)")
        }
        return try read("read the host's audit log") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?", arguments: [id, limit])
                .map(AuditEvent.init(row:))
        }
    }

    /// The newest event's id, 0 when there is none.
    public func latestAuditEventID() throws -> Int {
        try read("read the host's audit log") { db in try Int.fetchOne(db, sql: "SELECT MAX(id) FROM audit") ?? 0 }
    }

    // MARK: - Helpers

    /// A split as the replica keeps it: its JSON, keys sorted.
    static func encodeSplit(_ split: ScriptSplit) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(split)
    }

    /// A split read back from the replica, nil for none; a value that does not decode
    /// is a damaged replica, named by its script.
    static func decodeSplit(_ data: Data?, of script: String) throws -> ScriptSplit? {
        guard let data else { return nil }
        do {
            return try JSONDecoder().decode(ScriptSplit.self, from: data)
        } catch {
            throw UnreadableValue(what: "the split of script \(script)", detail: "\(error)")
        }
    }

    static func quarantines(_ db: Database) throws -> [ReplicaQuarantine] {
        try Row.fetchAll(db, sql: "SELECT customer, name, version, reason FROM quarantines ORDER BY customer, name").map { row in
            ReplicaQuarantine(
                script: ScriptAddress(
                    customer: try row.decode(String.self, forColumn: "customer"),
                    name: try row.decode(String.self, forColumn: "name")),
                version: try row.decode(Int.self, forColumn: "version"),
                reason: try row.decode(String.self, forColumn: "reason"))
        }
    }

    func insertAudit(
        _ db: Database, at: Date, actor: String, action: AuditAction, subject: String, detail: AuditDetail
    ) throws {
        _ = try insertAudit(db, at: at, actor: actor, action: action, subject: subject, detailJSON: try detail.json())
    }

    private func insertAudit(
        _ db: Database, at: Date, actor: String, action: AuditAction, subject: String, detailJSON: String
    ) throws -> AuditEvent {
        try db.execute(
            sql: "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
            arguments: [at, actor, action.rawValue, subject, detailJSON])
        return AuditEvent(
            id: Int(db.lastInsertedRowID), at: at, actor: actor, action: action, subject: subject, detail: detailJSON)
    }

    func write<T>(_ operation: @autoclosure () -> String, _ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch { throw translate(error, operation()) }
    }

    func read<T>(_ operation: @autoclosure () -> String, _ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch { throw translate(error, operation()) }
    }

    private func translate(_ error: any Error, _ operation: String) -> StoreError {
        SQLiteStore.translate(error, path: path, operation: operation)
    }
}
