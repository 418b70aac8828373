import BulkheadCore
import Foundation
import GRDB

// MARK: - ScriptStore

extension SQLiteStore {
    /// Stores the script's next version, makes it active, undeletes and releases it;
    /// refused while the script has an unfinished deployment.
    public func putScriptVersion(customer: String, name: String, source: String, actor: String) throws -> ScriptVersion {
        try checkScript(customer, name)
        try checkActor(actor)
        try checkContentSize("script \(customer)/\(name)", source)
        // Hash outside the transaction: the write lock is held only for the SQL.
        let sha256 = SHA256Hasher.hex(source)
        let size = source.utf8.count
        return try write("save script \(customer)/\(name)") { db in
            try Self.requireCustomer(db, customer)
            let at = now()
            let existing = try Row.fetchOne(
                db, sql: "SELECT id, active_version, deleted, quarantined FROM scripts WHERE customer = ? AND name = ?",
                arguments: [customer, name])
            let scriptID: Int64
            let version: Int
            var detail: AuditDetail
            if let existing {
                scriptID = try existing.decode(Int64.self, forColumn: "id")
                // New code live under a deployment would pull the script from under it.
                if let running = try Self.unfinishedDeploymentID(db, customer: customer, name: name) {
                    throw StoreError.deploymentInProgress(customer: customer, name: name, id: running)
                }
                // Under the write lock no other upload can take the same number; the
                // primary key (script_id, version) would refuse it anyway.
                let latest = try Int.fetchOne(
                    db, sql: "SELECT MAX(version) FROM script_versions WHERE script_id = ?", arguments: [scriptID]) ?? 0
                version = latest + 1
                detail = [
                    "previous_version": .int(try existing.decode(Int.self, forColumn: "active_version")),
                    "undeleted": .bool(try existing.decode(Bool.self, forColumn: "deleted")),
                    "released_quarantine": .bool(try existing.decode(Bool.self, forColumn: "quarantined")),
                ]
                try db.execute(
                    sql: """
                        UPDATE scripts SET active_version = ?, deleted = 0, quarantined = 0, quarantine_reason = NULL,
                            updated_at = ?
                        WHERE id = ?
                        """,
                    arguments: [version, at, scriptID])
            } else {
                scriptID = try Self.insertScript(db, customer: customer, name: name, at: at)
                version = 1
                detail = ["previous_version": .null, "undeleted": false, "released_quarantine": false]
            }
            try Self.insertVersion(db, scriptID: scriptID, version: version, source: source, sha256: sha256, size: size, at: at, actor: actor)
            detail = detail.merging(["version": .int(version), "sha256": .string(sha256), "size": .int(size)])
            try insertAudit(
                db, at: at, actor: actor, action: .scriptPut, subject: "script/\(customer)/\(name)", detail: detail)
            try recordChange(db, .script(customer: customer, name: name), at: at)
            return ScriptVersion(
                customer: customer, name: name, version: version, sha256: sha256, size: size, createdAt: at,
                createdBy: actor)
        }
    }

    /// A new script's row, with version 1 active; returns its id. The active
    /// version's foreign key is checked at commit, after the version row exists.
    static func insertScript(_ db: Database, customer: String, name: String, at: Date) throws -> Int64 {
        try db.execute(
            sql: "INSERT INTO scripts (customer, name, active_version, created_at, updated_at) VALUES (?, ?, 1, ?, ?)",
            arguments: [customer, name, at, at])
        return db.lastInsertedRowID
    }

    /// A version's row. The source goes in as bytes with their length and is cast to
    /// TEXT: GRDB binds a String as a C string (length -1), which cut a source at its
    /// first NUL byte, a byte Lua reads fine inside a string literal.
    static func insertVersion(
        _ db: Database, scriptID: Int64, version: Int, source: String, sha256: String, size: Int, at: Date, actor: String
    ) throws {
        try db.execute(
            sql: """
                INSERT INTO script_versions (script_id, version, source, sha256, size, created_at, created_by)
                VALUES (?, ?, CAST(? AS TEXT), ?, ?, ?, ?)
                """,
            arguments: [scriptID, version, Data(source.utf8), sha256, size, at, actor])
    }

    /// The customer's scripts (not deleted), by name.
    public func scripts(ofCustomer customer: String) throws -> [ScriptSummary] {
        try checkName("customer", customer)
        return try read("list the scripts of \(customer)") { db in
            try Row.fetchAll(db, sql: Self.summarySelect + " AND s.customer = ? ORDER BY s.name", arguments: [customer])
                .map(ScriptSummary.init(row:))
        }
    }

    /// One script of the customer, or nil when it does not exist or is deleted.
    public func script(customer: String, name: String) throws -> ScriptSummary? {
        try checkScript(customer, name)
        return try read("read script \(customer)/\(name)") { db in
            try Self.fetchSummary(db, customer: customer, name: name)
        }
    }

    /// Every version of the script, oldest first.
    public func scriptVersions(customer: String, name: String) throws -> [ScriptVersion] {
        try checkScript(customer, name)
        return try read("list the versions of script \(customer)/\(name)") { db in
            let script = try Self.fetchLiveScript(db, customer: customer, name: name)
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT version, sha256, size, created_at, created_by FROM script_versions
                    WHERE script_id = ? ORDER BY version
                    """,
                arguments: [script.id]
            ).map { row in try ScriptVersion(row: row, customer: customer, name: name) }
        }
    }

    /// The source of `version`, or of the active version when nil.
    public func scriptSource(customer: String, name: String, version: Int?) throws -> ScriptSource {
        try checkScript(customer, name)
        return try read("read the source of script \(customer)/\(name)") { db in
            let script = try Self.fetchLiveScript(db, customer: customer, name: name)
            let wanted = version ?? script.activeVersion
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT version, CAST(source AS BLOB) AS source, sha256, size, created_at, created_by
                        FROM script_versions WHERE script_id = ? AND version = ?
                        """,
                    arguments: [script.id, wanted])
            else {
                throw StoreError.scriptVersionNotFound(
                    customer: customer, name: name, version: wanted, latest: try Self.latestVersion(db, script.id))
            }
            return ScriptSource(
                version: try ScriptVersion(row: row, customer: customer, name: name),
                source: try Self.wholeText(row, column: "source"))
        }
    }

    /// Makes an earlier (or the given) version active again, ending the script's
    /// unfinished deployment (aborted).
    public func rollbackScript(customer: String, name: String, to version: Int?, actor: String) throws -> ScriptSummary {
        try checkScript(customer, name)
        try checkActor(actor)
        return try write("roll back script \(customer)/\(name)") { db in
            let script = try Self.fetchLiveScript(db, customer: customer, name: name)
            let latest = try Self.latestVersion(db, script.id)
            let target: Int
            if let version {
                guard version >= 1, version <= latest else {
                    throw StoreError.scriptVersionNotFound(customer: customer, name: name, version: version, latest: latest)
                }
                target = version
            } else {
                // "Previous" is the version numbered just below the active one: every
                // version is kept, so it exists whenever the active one is above 1.
                guard script.activeVersion > 1 else {
                    throw StoreError.noEarlierVersion(customer: customer, name: name, active: script.activeVersion)
                }
                target = script.activeVersion - 1
            }
            // Other code is active now: like an upload, that deserves a fresh chance.
            let releases = script.quarantined && target != script.activeVersion
            let at = now()
            try db.execute(
                sql: """
                    UPDATE scripts SET active_version = ?, updated_at = ?,
                        quarantined = CASE WHEN ? THEN 0 ELSE quarantined END,
                        quarantine_reason = CASE WHEN ? THEN NULL ELSE quarantine_reason END
                    WHERE id = ?
                    """,
                arguments: [target, at, releases, releases, script.id])
            var detail: AuditDetail = [
                "from": .int(script.activeVersion), "to": .int(target), "released_quarantine": .bool(releases),
            ]
            if let aborted = try abortDeployment(db, scriptID: script.id, customer: customer, name: name, at: at) {
                detail = detail.merging(["aborted_deployment": .int(aborted)])
            }
            try insertAudit(
                db, at: at, actor: actor, action: .scriptRolledBack, subject: "script/\(customer)/\(name)", detail: detail)
            try recordChange(db, .script(customer: customer, name: name), at: at)
            return try Self.requireSummary(db, customer: customer, name: name)
        }
    }

    /// Hides the script, ending its unfinished deployment (aborted); its versions stay
    /// for a later upload to continue.
    public func deleteScript(customer: String, name: String, actor: String) throws {
        try checkScript(customer, name)
        try checkActor(actor)
        try write("delete script \(customer)/\(name)") { db in
            let script = try Self.fetchLiveScript(db, customer: customer, name: name)
            let at = now()
            try db.execute(sql: "UPDATE scripts SET deleted = 1, updated_at = ? WHERE id = ?", arguments: [at, script.id])
            var detail: AuditDetail = ["active_version": .int(script.activeVersion)]
            if let aborted = try abortDeployment(db, scriptID: script.id, customer: customer, name: name, at: at) {
                detail = detail.merging(["aborted_deployment": .int(aborted)])
            }
            try insertAudit(
                db, at: at, actor: actor, action: .scriptDeleted, subject: "script/\(customer)/\(name)", detail: detail)
            try recordChange(db, .script(customer: customer, name: name), at: at)
        }
    }

    /// Quarantines or releases the script.
    public func setScriptQuarantined(
        customer: String, name: String, quarantined: Bool, reason: String?, actor: String
    ) throws -> ScriptSummary {
        try checkScript(customer, name)
        try checkActor(actor)
        try StoreArguments.checkQuarantineReason(reason)
        return try write("\(quarantined ? "quarantine" : "release") script \(customer)/\(name)") { db in
            let script = try Self.fetchLiveScript(db, customer: customer, name: name)
            let at = now()
            try db.execute(
                sql: "UPDATE scripts SET quarantined = ?, quarantine_reason = ?, updated_at = ? WHERE id = ?",
                arguments: [quarantined, quarantined ? reason : nil, at, script.id])
            try insertAudit(
                db, at: at, actor: actor, action: quarantined ? .scriptQuarantined : .scriptReleased,
                subject: "script/\(customer)/\(name)",
                detail: ["version": .int(script.activeVersion), "reason": .optional(reason)])
            try recordChange(db, .script(customer: customer, name: name), at: at)
            return try Self.requireSummary(db, customer: customer, name: name)
        }
    }

    /// Every customer's scripts (not deleted), by customer then name.
    public func allScripts() throws -> [ScriptSummary] {
        try read("list all scripts") { db in
            try Row.fetchAll(db, sql: Self.summarySelect + " ORDER BY s.customer, s.name").map(ScriptSummary.init(row:))
        }
    }

    /// The active version of every script not deleted, with its owner's cohort and
    /// the split of its unfinished deployment (with the candidate's source).
    public func activeScripts() throws -> [ActiveScript] {
        try read("list the active scripts") { db in
            try Row.fetchAll(db, sql: Self.activeScriptSelect + " ORDER BY s.customer, s.name").map(ActiveScript.init(row:))
        }
    }

    // MARK: Internals

    /// The columns of an ``ActiveScript`` (see `ActiveScript.init(row:)`); callers add
    /// `AND …` and `ORDER BY`. The candidate's version is joined only while its split
    /// gives it a share, so a script at 0 % reads no second source.
    static let activeScriptSelect = """
        SELECT s.customer, s.name, s.active_version, s.quarantined, CAST(v.source AS BLOB) AS source, v.sha256, c.cohort,
            s.split_deployment, s.split_version, s.split_percent, s.split_key_header,
            CAST(cv.source AS BLOB) AS split_source
        FROM scripts s
        JOIN script_versions v ON v.script_id = s.id AND v.version = s.active_version
        JOIN customers c ON c.name = s.customer
        LEFT JOIN script_versions cv ON cv.script_id = s.id AND cv.version = s.split_version
            AND s.split_deployment IS NOT NULL AND s.split_percent > 0
        WHERE s.deleted = 0
        """

    /// The columns of a ``ScriptSummary``; callers add `AND …` and `ORDER BY`.
    private static let summarySelect = """
        SELECT s.customer, s.name, s.active_version, s.quarantined, s.quarantine_reason, s.created_at, s.updated_at,
            v.sha256, v.size,
            (SELECT MAX(version) FROM script_versions WHERE script_id = s.id) AS latest_version
        FROM scripts s
        JOIN script_versions v ON v.script_id = s.id AND v.version = s.active_version
        WHERE s.deleted = 0
        """

    struct LiveScript {
        var id: Int64
        var activeVersion: Int
        var quarantined: Bool
    }

    /// The script's row, or ``StoreError`` not-found when the customer or script is
    /// unknown or the script is deleted.
    static func fetchLiveScript(_ db: Database, customer: String, name: String) throws -> LiveScript {
        guard
            let row = try Row.fetchOne(
                db,
                sql: "SELECT id, active_version, quarantined FROM scripts WHERE customer = ? AND name = ? AND deleted = 0",
                arguments: [customer, name])
        else {
            try requireCustomer(db, customer)
            throw StoreError.scriptNotFound(customer: customer, name: name)
        }
        return LiveScript(
            id: try row.decode(Int64.self, forColumn: "id"),
            activeVersion: try row.decode(Int.self, forColumn: "active_version"),
            quarantined: try row.decode(Bool.self, forColumn: "quarantined"))
    }

    private static func fetchSummary(_ db: Database, customer: String, name: String) throws -> ScriptSummary? {
        try Row.fetchOne(db, sql: summarySelect + " AND s.customer = ? AND s.name = ?", arguments: [customer, name])
            .map(ScriptSummary.init(row:))
    }

    private static func requireSummary(_ db: Database, customer: String, name: String) throws -> ScriptSummary {
        guard let summary = try fetchSummary(db, customer: customer, name: name) else {
            throw StoreError.scriptNotFound(customer: customer, name: name)
        }
        return summary
    }

    static func latestVersion(_ db: Database, _ scriptID: Int64) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT MAX(version) FROM script_versions WHERE script_id = ?", arguments: [scriptID]) ?? 0
    }

    func checkScript(_ customer: String, _ name: String) throws {
        try checkName("customer", customer)
        try checkName("script", name)
    }
}

extension ScriptVersion {
    init(row: Row, customer: String, name: String) throws {
        self.init(
            customer: customer, name: name,
            version: try row.decode(Int.self, forColumn: "version"),
            sha256: try row.decode(String.self, forColumn: "sha256"),
            size: try row.decode(Int.self, forColumn: "size"),
            createdAt: try row.decode(Date.self, forColumn: "created_at"),
            createdBy: try row.decode(String.self, forColumn: "created_by"))
    }
}

extension ScriptSummary {
    init(row: Row) throws {
        self.init(
            customer: try row.decode(String.self, forColumn: "customer"),
            name: try row.decode(String.self, forColumn: "name"),
            activeVersion: try row.decode(Int.self, forColumn: "active_version"),
            latestVersion: try row.decode(Int.self, forColumn: "latest_version"),
            sha256: try row.decode(String.self, forColumn: "sha256"),
            size: try row.decode(Int.self, forColumn: "size"),
            quarantined: try row.decode(Bool.self, forColumn: "quarantined"),
            quarantineReason: try row.decode(String?.self, forColumn: "quarantine_reason"),
            createdAt: try row.decode(Date.self, forColumn: "created_at"),
            updatedAt: try row.decode(Date.self, forColumn: "updated_at"))
    }
}
