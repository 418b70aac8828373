import BulkheadCore
import Foundation
import GRDB

// MARK: - DeploymentStore

extension SQLiteStore {
    /// Stores the script's next version without making it active. A new script, or a
    /// deleted one (nothing of it is served), gets this version active, as an upload
    /// gives it; a live script keeps its active version and its quarantine.
    public func putScriptVersionInactive(customer: String, name: String, source: String, actor: String) throws -> ScriptVersion {
        try checkScript(customer, name)
        try checkActor(actor)
        try checkContentSize("script \(customer)/\(name)", source)
        // Hash outside the transaction: the write lock is held only for the SQL.
        let sha256 = SHA256Hasher.hex(source)
        let size = source.utf8.count
        return try write("save script \(customer)/\(name) without making it active") { db in
            try Self.requireCustomer(db, customer)
            let at = now()
            let existing = try Row.fetchOne(
                db, sql: "SELECT id, active_version, deleted FROM scripts WHERE customer = ? AND name = ?",
                arguments: [customer, name])
            let scriptID: Int64
            let version: Int
            let activeVersion: Int
            let undeleted: Bool
            if let existing {
                scriptID = try existing.decode(Int64.self, forColumn: "id")
                version = try Self.latestVersion(db, scriptID) + 1
                undeleted = try existing.decode(Bool.self, forColumn: "deleted")
                if undeleted {
                    // A deleted script serves nothing: its new version is all there is.
                    activeVersion = version
                    try db.execute(
                        sql: """
                            UPDATE scripts SET active_version = ?, deleted = 0, quarantined = 0, quarantine_reason = NULL,
                                updated_at = ?
                            WHERE id = ?
                            """,
                        arguments: [version, at, scriptID])
                } else {
                    activeVersion = try existing.decode(Int.self, forColumn: "active_version")
                }
            } else {
                scriptID = try Self.insertScript(db, customer: customer, name: name, at: at)
                version = 1
                activeVersion = 1
                undeleted = false
            }
            try Self.insertVersion(db, scriptID: scriptID, version: version, source: source, sha256: sha256, size: size, at: at, actor: actor)
            try insertAudit(
                db, at: at, actor: actor, action: .scriptStaged, subject: "script/\(customer)/\(name)",
                detail: [
                    "version": .int(version), "sha256": .string(sha256), "size": .int(size),
                    "active_version": .int(activeVersion), "undeleted": .bool(undeleted),
                ])
            // The data plane sees a change only when the version became active.
            if activeVersion == version {
                try recordChange(db, .script(customer: customer, name: name), at: at)
            }
            return ScriptVersion(
                customer: customer, name: name, version: version, sha256: sha256, size: size, createdAt: at,
                createdBy: actor)
        }
    }

    /// Creates a deployment of `version` of the script from its active version, and
    /// puts its split on the script.
    public func createDeployment(
        customer: String, name: String, version: Int, keyHeader: String?, percent: Double, status: String, state: Data,
        actor: String
    ) throws -> DeploymentRecord {
        try checkScript(customer, name)
        try checkActor(actor)
        try StoreArguments.checkDeploymentStatus(status)
        try StoreArguments.checkDeploymentPercent(percent)
        try StoreArguments.checkKeyHeader(keyHeader)
        return try write("create a deployment of script \(customer)/\(name) version \(version)") { db in
            let script = try Self.fetchLiveScript(db, customer: customer, name: name)
            let latest = try Self.latestVersion(db, script.id)
            guard version >= 1, version <= latest else {
                throw StoreError.scriptVersionNotFound(customer: customer, name: name, version: version, latest: latest)
            }
            // Checked here for a clear error; the partial unique index
            // script_deployments_one_unfinished_per_script would refuse the insert anyway.
            if let running = try Self.unfinishedDeploymentID(db, customer: customer, name: name) {
                throw StoreError.deploymentInProgress(customer: customer, name: name, id: running)
            }
            guard version != script.activeVersion else {
                throw StoreError.deploymentOfActiveVersion(customer: customer, name: name, version: version)
            }
            let at = now()
            try db.execute(
                sql: """
                    INSERT INTO script_deployments (customer, name, version, from_version, key_header, percent, status,
                        finished, state, created_at, updated_at, created_by)
                    VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)
                    """,
                arguments: [customer, name, version, script.activeVersion, keyHeader, percent, status, state, at, at, actor])
            let record = DeploymentRecord(
                id: Int(db.lastInsertedRowID), customer: customer, name: name, version: version,
                fromVersion: script.activeVersion, keyHeader: keyHeader, percent: percent, status: status, finished: false,
                state: state, createdAt: at, updatedAt: at, createdBy: actor)
            try db.execute(
                sql: """
                    UPDATE scripts SET split_deployment = ?, split_version = ?, split_percent = ?, split_key_header = ?
                    WHERE id = ?
                    """,
                arguments: [record.id, version, percent, keyHeader, script.id])
            try insertAudit(
                db, at: at, actor: actor, action: .deploymentCreated, subject: "deployment/\(record.id)",
                detail: [
                    "script": .string("\(customer)/\(name)"), "version": .int(version),
                    "from_version": .int(script.activeVersion), "key_header": .optional(keyHeader),
                    "percent": .double(percent), "status": .string(status),
                ])
            try recordChange(db, .script(customer: customer, name: name), at: at)
            return record
        }
    }

    /// Replaces a deployment's status, state and share; `end` finishes it (the share
    /// goes to 0 whatever `percent` says).
    public func updateDeployment(
        id: Int, status: String, state: Data, percent: Double, end: DeploymentEnd?, actor: String
    ) throws -> DeploymentRecord {
        try checkActor(actor)
        try StoreArguments.checkDeploymentStatus(status)
        try StoreArguments.checkDeploymentPercent(percent)
        return try write("update deployment \(id)") { db in
            guard var record = try Self.fetchDeployment(db, id: id) else { throw StoreError.deploymentNotFound(id) }
            if record.finished { throw StoreError.deploymentFinished(id) }
            guard
                let scriptRow = try Row.fetchOne(
                    db, sql: "SELECT id, quarantined FROM scripts WHERE customer = ? AND name = ?",
                    arguments: [record.customer, record.name])
            else {
                // The foreign key keeps the row; only a damaged store gets here.
                throw UnreadableValue(
                    what: "deployment \(id)", detail: "its script \(record.customer)/\(record.name) has no row")
            }
            let scriptID = try scriptRow.decode(Int64.self, forColumn: "id")
            let previousStatus = record.status
            let previousPercent = record.percent
            let at = now()
            record.status = status
            record.state = state
            record.percent = end == nil ? percent : 0
            record.finished = end != nil
            record.updatedAt = at
            try db.execute(
                sql: "UPDATE script_deployments SET status = ?, state = ?, percent = ?, finished = ?, updated_at = ? WHERE id = ?",
                arguments: [status, state, record.percent, record.finished, at, id])
            var detail: AuditDetail = [
                "script": .string("\(record.customer)/\(record.name)"), "version": .int(record.version),
                "previous_status": .string(previousStatus), "status": .string(status), "percent": .double(record.percent),
                "finished": .bool(record.finished), "end": .optional(end.map(Self.endWord)),
            ]
            let scriptChanged: Bool
            switch end {
            case nil:
                try db.execute(sql: "UPDATE scripts SET split_percent = ? WHERE id = ?", arguments: [record.percent, scriptID])
                scriptChanged = record.percent != previousPercent
            case .revert?:
                try Self.clearSplit(db, scriptID: scriptID)
                scriptChanged = true
            case .promote?:
                // The candidate is new code for everyone: like an upload, a fresh chance.
                let released = try scriptRow.decode(Bool.self, forColumn: "quarantined")
                try db.execute(
                    sql: """
                        UPDATE scripts SET active_version = ?, quarantined = 0, quarantine_reason = NULL, updated_at = ?,
                            split_deployment = NULL, split_version = NULL, split_percent = NULL, split_key_header = NULL
                        WHERE id = ?
                        """,
                    arguments: [record.version, at, scriptID])
                detail = detail.merging(["released_quarantine": .bool(released)])
                scriptChanged = true
            }
            try insertAudit(db, at: at, actor: actor, action: .deploymentUpdated, subject: "deployment/\(id)", detail: detail)
            if scriptChanged {
                try recordChange(db, .script(customer: record.customer, name: record.name), at: at)
            }
            return record
        }
    }

    /// One deployment, or nil.
    public func deployment(id: Int) throws -> DeploymentRecord? {
        try read("read deployment \(id)") { db in try Self.fetchDeployment(db, id: id) }
    }

    /// The deployments of the script, newest first, at most `limit` (none for an
    /// unknown script).
    public func deployments(customer: String, name: String, limit: Int) throws -> [DeploymentRecord] {
        try checkScript(customer, name)
        try StoreArguments.checkDeploymentLimit(limit)
        return try read("list the deployments of script \(customer)/\(name)") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM script_deployments WHERE customer = ? AND name = ? ORDER BY id DESC LIMIT ?",
                arguments: [customer, name, limit]
            ).map(DeploymentRecord.init(row:))
        }
    }

    /// Every unfinished deployment, oldest first.
    public func unfinishedDeployments() throws -> [DeploymentRecord] {
        try read("list the unfinished deployments") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM script_deployments WHERE finished = 0 ORDER BY id")
                .map(DeploymentRecord.init(row:))
        }
    }

    // MARK: Shared with the script writes

    /// The id of the script's unfinished deployment, or nil.
    static func unfinishedDeploymentID(_ db: Database, customer: String, name: String) throws -> Int? {
        try Int.fetchOne(
            db, sql: "SELECT id FROM script_deployments WHERE customer = ? AND name = ? AND finished = 0",
            arguments: [customer, name])
    }

    /// Ends the script's unfinished deployment, if it has one, inside the caller's
    /// transaction (a rollback or a delete): status `aborted`, finished, share 0, and
    /// the split cleared. Returns the deployment's id. The caller audits and records
    /// the script's change.
    func abortDeployment(_ db: Database, scriptID: Int64, customer: String, name: String, at: Date) throws -> Int? {
        guard let id = try Self.unfinishedDeploymentID(db, customer: customer, name: name) else { return nil }
        try db.execute(
            sql: "UPDATE script_deployments SET status = 'aborted', finished = 1, percent = 0, updated_at = ? WHERE id = ?",
            arguments: [at, id])
        try Self.clearSplit(db, scriptID: scriptID)
        return id
    }

    // MARK: Internals

    private static func clearSplit(_ db: Database, scriptID: Int64) throws {
        try db.execute(
            sql: """
                UPDATE scripts SET split_deployment = NULL, split_version = NULL, split_percent = NULL, split_key_header = NULL
                WHERE id = ?
                """,
            arguments: [scriptID])
    }

    private static func fetchDeployment(_ db: Database, id: Int) throws -> DeploymentRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM script_deployments WHERE id = ?", arguments: [id]).map(DeploymentRecord.init(row:))
    }

    /// How an end reads in the audit log.
    static func endWord(_ end: DeploymentEnd) -> String {
        switch end {
        case .promote: "promote"
        case .revert: "revert"
        }
    }
}

extension DeploymentRecord {
    init(row: Row) throws {
        self.init(
            id: try row.decode(Int.self, forColumn: "id"),
            customer: try row.decode(String.self, forColumn: "customer"),
            name: try row.decode(String.self, forColumn: "name"),
            version: try row.decode(Int.self, forColumn: "version"),
            fromVersion: try row.decode(Int.self, forColumn: "from_version"),
            keyHeader: try row.decode(String?.self, forColumn: "key_header"),
            percent: try row.decode(Double.self, forColumn: "percent"),
            status: try row.decode(String.self, forColumn: "status"),
            finished: try row.decode(Bool.self, forColumn: "finished"),
            state: try row.decode(Data.self, forColumn: "state"),
            createdAt: try row.decode(Date.self, forColumn: "created_at"),
            updatedAt: try row.decode(Date.self, forColumn: "updated_at"),
            createdBy: try row.decode(String.self, forColumn: "created_by"))
    }
}
