import BulkheadCore
import Foundation
import GRDB

// MARK: - ArtifactStore

extension SQLiteStore {
    /// Stores the next version of `kind`.
    public func putArtifact(kind: ArtifactKind, content: String, actor: String) throws -> ArtifactSummary {
        try checkActor(actor)
        try checkContentSize("the \(kind) artifact", content)
        let sha256 = SHA256Hasher.hex(content)
        let size = content.utf8.count
        return try write("save a \(kind) artifact") { db in
            let latest = try Int.fetchOne(
                db, sql: "SELECT MAX(version) FROM artifacts WHERE kind = ?", arguments: [kind.rawValue]) ?? 0
            let summary = ArtifactSummary(
                kind: kind, version: latest + 1, sha256: sha256, size: size, createdAt: now(), createdBy: actor)
            try db.execute(
                sql: """
                    INSERT INTO artifacts (kind, version, content, sha256, size, created_at, created_by)
                    VALUES (?, ?, CAST(? AS TEXT), ?, ?, ?, ?)
                    """,
                // As bytes with their length: see `wholeText(_:column:)`.
                arguments: [kind.rawValue, summary.version, Data(content.utf8), sha256, size, summary.createdAt, actor])
            try insertAudit(
                db, at: summary.createdAt, actor: actor, action: .artifactPut,
                subject: "artifact/\(kind.rawValue)/\(summary.version)",
                detail: ["sha256": .string(sha256), "size": .int(size)])
            return summary
        }
    }

    /// Selects an artifact with its content whole (see `wholeText(_:column:)`).
    private static let artifactColumns =
        "SELECT kind, version, CAST(content AS BLOB) AS content, sha256, size, created_at, created_by FROM artifacts"

    /// One version of `kind` with its content, or nil.
    public func artifact(kind: ArtifactKind, version: Int) throws -> Artifact? {
        try read("read \(kind) artifact \(version)") { db in
            try Row.fetchOne(
                db,
                sql: "\(Self.artifactColumns) WHERE kind = ? AND version = ?", arguments: [kind.rawValue, version]
            ).map(Artifact.init(row:))
        }
    }

    /// Every version of `kind`, oldest first, without content.
    public func artifacts(kind: ArtifactKind) throws -> [ArtifactSummary] {
        try read("list \(kind) artifacts") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT kind, version, sha256, size, created_at, created_by FROM artifacts
                    WHERE kind = ? ORDER BY version
                    """,
                arguments: [kind.rawValue]
            ).map(ArtifactSummary.init(row:))
        }
    }

    /// The highest version of `kind`, or nil.
    public func latestArtifact(kind: ArtifactKind) throws -> Artifact? {
        try read("read the latest \(kind) artifact") { db in
            try Row.fetchOne(
                db, sql: "\(Self.artifactColumns) WHERE kind = ? ORDER BY version DESC LIMIT 1", arguments: [kind.rawValue]
            ).map(Artifact.init(row:))
        }
    }
}

extension ArtifactKind {
    /// The kind stored in `column`; a value this build does not know is a damaged row.
    init(row: Row, column: String) throws {
        let text = try row.decode(String.self, forColumn: column)
        guard let kind = ArtifactKind(rawValue: text) else {
            throw UnreadableValue(what: "an artifact kind", detail: "unknown kind \(text.debugDescription) in \(column)")
        }
        self = kind
    }
}

extension ArtifactSummary {
    init(row: Row) throws {
        self.init(
            kind: try ArtifactKind(row: row, column: "kind"),
            version: try row.decode(Int.self, forColumn: "version"),
            sha256: try row.decode(String.self, forColumn: "sha256"),
            size: try row.decode(Int.self, forColumn: "size"),
            createdAt: try row.decode(Date.self, forColumn: "created_at"),
            createdBy: try row.decode(String.self, forColumn: "created_by"))
    }
}

extension Artifact {
    init(row: Row) throws {
        self.init(summary: try ArtifactSummary(row: row), content: try SQLiteStore.wholeText(row, column: "content"))
    }
}
