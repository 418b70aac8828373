import BulkheadCore
import Foundation
import GRDB

/// Break glass on one host: a layer over the change feed that takes precedence over
/// it and holds until cleared on the host (`unfreeze`, `unpin`).
public struct HostOverrides: Codable, Sendable, Equatable {
    /// Who froze rollouts on this host, and when; nil when not frozen.
    public var frozen: Mark?
    /// Kinds pinned by break glass, with their version.
    public var pins: [ArtifactKind: Pin]

    /// Who set an override, and when.
    public struct Mark: Codable, Sendable, Equatable {
        /// The actor (`break-glass`, `operator`, …).
        public var actor: String
        /// When it was set.
        public var at: Date

        /// A mark.
        public init(actor: String, at: Date) {
            self.actor = actor
            self.at = at
        }
    }

    /// A pinned version.
    public struct Pin: Codable, Sendable, Equatable {
        /// Every pool of the host runs this version of the kind.
        public var version: Int
        /// Who pinned it, and when.
        public var mark: Mark

        /// A pin.
        public init(version: Int, mark: Mark) {
            self.version = version
            self.mark = mark
        }
    }

    /// No override: the host follows the feed.
    public init(frozen: Mark? = nil, pins: [ArtifactKind: Pin] = [:]) {
        self.frozen = frozen
        self.pins = pins
    }

    /// Whether rollouts are frozen on this host.
    public var isFrozen: Bool { frozen != nil }

    /// The pinned version of `kind`, or nil.
    public func pinnedVersion(of kind: ArtifactKind) -> Int? { pins[kind]?.version }

    /// Reads the overrides in `db` (a host replica).
    static func read(_ db: Database) throws -> HostOverrides {
        var overrides = HostOverrides()
        if let row = try Row.fetchOne(db, sql: "SELECT actor, at FROM freeze WHERE id = 1") {
            overrides.frozen = Mark(actor: try row.decode(String.self, forColumn: "actor"), at: try row.decode(Date.self, forColumn: "at"))
        }
        for row in try Row.fetchAll(db, sql: "SELECT kind, version, actor, at FROM pins") {
            let text = try row.decode(String.self, forColumn: "kind")
            guard let kind = ArtifactKind(rawValue: text) else {
                throw StoreError.unreadableSetting("pins.\(text)", value: text, expected: "runtime, rules, binary or policy")
            }
            overrides.pins[kind] = Pin(
                version: try row.decode(Int.self, forColumn: "version"),
                mark: Mark(actor: try row.decode(String.self, forColumn: "actor"), at: try row.decode(Date.self, forColumn: "at")))
        }
        return overrides
    }
}

extension HostReplica {
    // MARK: - Break glass (host overrides)

    /// The freeze and the pins of this host.
    public func overrides() throws -> HostOverrides {
        try read("read the host's break-glass overrides") { db in try HostOverrides.read(db) }
    }

    /// Freezes or unfreezes rollouts on this host. Audited (as the control store
    /// audits its settings: `setting.set` / `setting.clear` of `frozen`).
    public func setFrozen(_ frozen: Bool, actor: String) throws {
        try write("\(frozen ? "freeze" : "unfreeze") rollouts on this host") { db in
            let at = clock()
            let was = try Bool.fetchOne(db, sql: "SELECT 1 FROM freeze WHERE id = 1") ?? false
            if frozen {
                try db.execute(
                    sql: "INSERT INTO freeze (id, actor, at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET actor = excluded.actor, at = excluded.at",
                    arguments: [actor, at])
            } else {
                try db.execute(sql: "DELETE FROM freeze WHERE id = 1")
            }
            try insertAudit(
                db, at: at, actor: actor, action: frozen ? .settingSet : .settingCleared, subject: "setting/\(SettingKey.frozen)",
                detail: ["value": .bool(frozen), "previous": .bool(was)])
        }
    }

    /// Pins `kind` to `version` on this host, or (nil) unpins it. Audited.
    public func setPin(_ kind: ArtifactKind, version: Int?, actor: String) throws {
        if let version, version < 0 { throw StoreError.invalidArgument("a pinned version is 0 or more, got \(version)") }
        try write("\(version == nil ? "unpin" : "pin") the \(kind.rawValue) on this host") { db in
            let at = clock()
            let previous = try Int.fetchOne(db, sql: "SELECT version FROM pins WHERE kind = ?", arguments: [kind.rawValue])
            if let version {
                try db.execute(
                    sql: """
                        INSERT INTO pins (kind, version, actor, at) VALUES (?, ?, ?, ?)
                        ON CONFLICT (kind) DO UPDATE SET version = excluded.version, actor = excluded.actor, at = excluded.at
                        """,
                    arguments: [kind.rawValue, version, actor, at])
            } else {
                try db.execute(sql: "DELETE FROM pins WHERE kind = ?", arguments: [kind.rawValue])
            }
            try insertAudit(
                db, at: at, actor: actor, action: version == nil ? .settingCleared : .settingSet,
                subject: "setting/\(SettingKey.pinnedVersion(kind))",
                detail: ["value": .optional(version), "previous": .optional(previous)])
        }
    }

    /// Brings a control store's freeze and pins from before break glass moved into
    /// the replica over once: done only when the replica has not imported before
    /// (an audit row `break-glass.import` marks it) and there is something to bring.
    /// Afterwards the control store's old settings are ignored. Returns whether it
    /// imported anything.
    @discardableResult
    public func importControlStoreOverrides(frozen: Bool, pins: [ArtifactKind: Int], actor: String) throws -> Bool {
        guard frozen || !pins.isEmpty else { return false }
        return try write("import the control store's freeze and pins") { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM audit WHERE action = ? LIMIT 1", arguments: [AuditAction.breakGlassImported.rawValue]) != true
            else { return false }
            let at = clock()
            if frozen, try Bool.fetchOne(db, sql: "SELECT 1 FROM freeze WHERE id = 1") != true {
                try db.execute(sql: "INSERT INTO freeze (id, actor, at) VALUES (1, ?, ?)", arguments: [actor, at])
            }
            for (kind, version) in pins.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where version >= 0 {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO pins (kind, version, actor, at) VALUES (?, ?, ?, ?)",
                    arguments: [kind.rawValue, version, actor, at])
            }
            var detail: [String: AuditDetail.Value] = ["frozen": .bool(frozen)]
            for (kind, version) in pins { detail["pinned.\(kind.rawValue)"] = .int(version) }
            try insertAudit(db, at: at, actor: actor, action: .breakGlassImported, subject: "break-glass", detail: AuditDetail(detail))
            return true
        }
    }

    /// Records that every pool of this host runs `version` of `kind` when nothing
    /// else says otherwise (what an unpin leaves behind), until the feed brings a new
    /// active version. Audited.
    public func keepActiveVersion(_ version: Int, of kind: ArtifactKind, pools: [String], actor: String) throws {
        try write("keep \(kind.rawValue) v\(version) as the pools' active version") { db in
            for pool in pools.sorted() {
                try db.execute(
                    sql: """
                        INSERT INTO active_artifacts (kind, pool, version) VALUES (?, ?, ?)
                        ON CONFLICT (kind, pool) DO UPDATE SET version = excluded.version
                        """,
                    arguments: [kind.rawValue, pool, version])
            }
            try insertAudit(
                db, at: clock(), actor: actor, action: .settingSet, subject: "setting/active.\(kind.rawValue)",
                detail: ["value": .int(version), "pools": .string(pools.sorted().joined(separator: ","))])
        }
    }

    /// Keeps an artifact version's content, so a slot pinned to it starts without the
    /// control store. Not audited: it changes nothing a slot runs by itself.
    public func keepArtifact(_ artifact: ReplicaArtifact) throws {
        guard artifact.version >= 1 else { return }
        try write("keep \(artifact.kind.rawValue) artifact \(artifact.version)") { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO artifacts (kind, version, content) VALUES (?, ?, CAST(? AS TEXT))",
                arguments: [artifact.kind.rawValue, artifact.version, Data(artifact.content.utf8)])
        }
    }

    /// The artifact versions of `kind` whose content the replica holds.
    public func artifactVersions(of kind: ArtifactKind) throws -> [Int] {
        try read("read the \(kind.rawValue) versions in the replica") { db in
            try Int.fetchAll(db, sql: "SELECT version FROM artifacts WHERE kind = ? ORDER BY version", arguments: [kind.rawValue])
        }
    }

    // MARK: - Stage reports

    /// Replaces the host's report on rollout `rollout` (an encoded `StageReport`).
    public func saveStageReport(rollout: Int, report: Data) throws {
        try write("save the stage report of rollout \(rollout)") { db in
            try db.execute(
                sql: """
                    INSERT INTO stage_reports (rollout, report, written_at) VALUES (?, ?, ?)
                    ON CONFLICT (rollout) DO UPDATE SET report = excluded.report, written_at = excluded.written_at
                    """,
                arguments: [rollout, report, clock()])
        }
    }

    /// Forgets the report on a rollout that ended.
    public func removeStageReport(rollout: Int) throws {
        try write("remove the stage report of rollout \(rollout)") { db in
            try db.execute(sql: "DELETE FROM stage_reports WHERE rollout = ?", arguments: [rollout])
        }
    }

    /// Every report, by rollout id.
    public func stageReports() throws -> [Int: Data] {
        try read("read the stage reports") { db in try HostReplicaReader.stageReports(db) }
    }

    // MARK: - Deployment reports

    /// Replaces the host's report on script deployment `deployment` (encoded by the
    /// deployment engine).
    public func saveDeploymentReport(deployment: Int, report: Data) throws {
        try write("save the report on deployment \(deployment)") { db in
            try db.execute(
                sql: """
                    INSERT INTO deployment_reports (deployment, report, written_at) VALUES (?, ?, ?)
                    ON CONFLICT (deployment) DO UPDATE SET report = excluded.report, written_at = excluded.written_at
                    """,
                arguments: [deployment, report, clock()])
        }
    }

    /// Forgets the report on a deployment that ended.
    public func removeDeploymentReport(deployment: Int) throws {
        try write("remove the report on deployment \(deployment)") { db in
            try db.execute(sql: "DELETE FROM deployment_reports WHERE deployment = ?", arguments: [deployment])
        }
    }

    /// Every deployment report, by deployment id.
    public func deploymentReports() throws -> [Int: Data] {
        try read("read the deployment reports") { db in try HostReplicaReader.deploymentReports(db) }
    }
}

/// A read-only connection to a host replica, for the control plane: the host's
/// overrides, its stage and deployment reports and its applied revision. Reading
/// never waits on the host's write lock (WAL), and nothing here can write the file:
/// the host agent is its only writer. Not thread-safe: one owner calls it.
public final class HostReplicaReader {
    /// The replica file, absolute.
    public let path: String
    let queue: DatabaseQueue

    /// Opens `path` read-only. Throws a ``StoreError`` when it is missing, not a
    /// host replica, damaged, or of a schema without the overrides.
    public init(path: String, busyTimeoutSeconds: Double = 0.05) throws {
        let path = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError.missingStore(path: path) }
        try SQLiteFileHeader.check(path: path, applicationID: ReplicaSchema.applicationID)
        do {
            var configuration = SQLiteStore.connectionConfiguration(SQLiteStoreConfiguration(), label: "replica.reader")
            configuration.readonly = true
            configuration.busyMode = .timeout(busyTimeoutSeconds)
            queue = try DatabaseQueue(path: path, configuration: configuration)
            _ = try queue.read { db in try HostOverrides.read(db) }
        } catch {
            throw SQLiteStore.openError(error, path: path, operation: "read the host replica")
        }
    }

    /// The host's break-glass overrides.
    public func overrides() throws -> HostOverrides {
        try read("read the host's break-glass overrides") { db in try HostOverrides.read(db) }
    }

    /// The host's stage reports (encoded `StageReport`s), by rollout id.
    public func stageReports() throws -> [Int: Data] {
        try read("read the stage reports") { db in try Self.stageReports(db) }
    }

    /// The host's reports on the script deployments it serves (encoded by the
    /// deployment engine), by deployment id; none from a replica of a build before
    /// deployments, which has no such table until its host agent is upgraded.
    public func deploymentReports() throws -> [Int: Data] {
        try read("read the deployment reports") { db in try Self.deploymentReports(db) }
    }

    /// The feed revision the host has applied, or nil before its first copy.
    public func appliedRevision() throws -> Int? {
        try read("read the applied revision") { db in try Int.fetchOne(db, sql: "SELECT revision FROM feed_state WHERE id = 1") }
    }

    /// The version of `kind` the host runs in `pool` when no rollout covers a slot
    /// (after an unpin: the pinned version), or nil when the host never recorded one.
    public func activeVersion(of kind: ArtifactKind, inPool pool: String) throws -> Int? {
        try read("read the host's active \(kind.rawValue) version of pool \(pool)") { db in
            try Int.fetchOne(
                db, sql: "SELECT version FROM active_artifacts WHERE kind = ? AND pool = ?", arguments: [kind.rawValue, pool])
        }
    }

    static func stageReports(_ db: Database) throws -> [Int: Data] {
        var reports: [Int: Data] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT rollout, report FROM stage_reports") {
            reports[try row.decode(Int.self, forColumn: "rollout")] = try row.decode(Data.self, forColumn: "report")
        }
        return reports
    }

    static func deploymentReports(_ db: Database) throws -> [Int: Data] {
        // This connection is read-only and cannot migrate an older replica. Asked of
        // SQLite each time (not GRDB's schema cache): the host may migrate the file
        // while the connection stays open.
        let upgraded = try Bool.fetchOne(
            db, sql: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deployment_reports')") ?? false
        guard upgraded else { return [:] }
        var reports: [Int: Data] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT deployment, report FROM deployment_reports") {
            reports[try row.decode(Int.self, forColumn: "deployment")] = try row.decode(Data.self, forColumn: "report")
        }
        return reports
    }

    private func read<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
        do { return try queue.read(body) } catch { throw SQLiteStore.translate(error, path: path, operation: operation) }
    }
}
