import BulkheadCore
import Foundation
import GRDB

extension HostReplicaReader {
    /// The last known good configuration of every pool the host ran, with the worker
    /// count a `cohort scale` left (the control plane's fallback for a cohort file it
    /// cannot read, and its view of the pools' sizes). Read-only.
    public func knownGoodCohorts() throws -> [CohortConfiguration] {
        do {
            return try queue.read { db in
                let counts = try Self.workerCounts(db)
                return try Row.fetchAll(db, sql: "SELECT * FROM known_good_cohorts ORDER BY pool").map { row in
                    var cohort = try KnownGoodCohort(row: row).configuration
                    if let workers = counts[cohort.name] {
                        cohort.workers = workers
                        cohort.canaryWorkers = min(cohort.canaryWorkers, workers)
                    }
                    return cohort
                }
            }
        } catch {
            throw SQLiteStore.translate(error, path: path, operation: "read the known good cohorts")
        }
    }

    /// The worker count of each pool a `cohort scale` set, by pool.
    public func workerCounts() throws -> [String: Int] {
        do {
            return try queue.read { db in try Self.workerCounts(db) }
        } catch {
            throw SQLiteStore.translate(error, path: path, operation: "read the worker counts")
        }
    }

    private static func workerCounts(_ db: Database) throws -> [String: Int] {
        try Dictionary(
            Row.fetchAll(db, sql: "SELECT pool, workers FROM worker_counts").map { row in
                (try row.decode(String.self, forColumn: "pool"), try row.decode(Int.self, forColumn: "workers"))
            }, uniquingKeysWith: { first, _ in first })
    }

    /// The scripts the host holds in quarantine (the version that ended its workers,
    /// and why). The host decides quarantines; the control plane only shows them.
    public func quarantines() throws -> [ReplicaQuarantine] {
        do {
            return try queue.read { db in try HostReplica.quarantines(db) }
        } catch {
            throw SQLiteStore.translate(error, path: path, operation: "read the host's quarantines")
        }
    }
}
