import BulkheadCore
import Foundation
import GRDB

// MARK: - Known good cohorts from before the host replica

extension SQLiteStore {
    // The host agent keeps its pools' last known good cohorts in its replica (it is
    // their only writer: `HostReplica.saveKnownGood`). A control store of an older
    // bulkhead may still hold some: they are read once, for the import into a new
    // replica, and never written here any more.

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
