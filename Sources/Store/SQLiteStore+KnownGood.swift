import BulkheadCore
import Foundation
import GRDB

// MARK: - KnownGoodStore

extension SQLiteStore {
    /// Saves a pool's last known good configuration; unchanged ones are not rewritten.
    public func saveKnownGood(_ configuration: CohortConfiguration, actor: String) throws {
        let pool = configuration.name
        try checkName("pool", pool)
        try checkActor(actor)
        let json: String
        do {
            json = try Self.encode(configuration)
        } catch {
            throw StoreError.invalidArgument("the configuration of pool \(pool) cannot be encoded as JSON: \(error)")
        }
        try write("save the known good configuration of pool \(pool)") { db in
            let stored = try String.fetchOne(
                db, sql: "SELECT configuration FROM known_good_cohorts WHERE pool = ?", arguments: [pool])
            // The supervisor saves on every healthy start; only a change is news.
            guard stored != json else { return }
            let at = now()
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

    /// The pool's last known good configuration, or nil.
    public func knownGood(pool: String) throws -> KnownGoodCohort? {
        try checkName("pool", pool)
        return try read("read the known good configuration of pool \(pool)") { db in
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

    /// Sorted keys: the same configuration always encodes to the same text, so
    /// comparing texts tells whether it changed.
    private static func encode(_ configuration: CohortConfiguration) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(configuration), as: UTF8.self)
    }
}

extension KnownGoodCohort {
    init(row: Row) throws {
        let pool = try row.decode(String.self, forColumn: "pool")
        let json = try row.decode(String.self, forColumn: "configuration")
        let configuration: CohortConfiguration
        do {
            configuration = try JSONDecoder().decode(CohortConfiguration.self, from: Data(json.utf8))
        } catch {
            // E.g. saved by a build whose CohortConfiguration had other fields.
            throw UnreadableValue(what: "the known good configuration of pool \(pool)", detail: "\(error)")
        }
        self.init(configuration: configuration, savedAt: try row.decode(Date.self, forColumn: "saved_at"))
    }
}
