import BulkheadCore
import Foundation
import Store

// MARK: - ArtifactStore

extension EtcdStore {
    /// Stores the next version of `kind`.
    public func putArtifact(kind: ArtifactKind, content: String, actor: String) throws -> ArtifactSummary {
        try StoreArguments.checkActor(actor)
        try checkContentSize("the \(kind) artifact", content)
        let bytes = Array(content.utf8)
        let sha256 = SHA256Hasher.hex(bytes)
        let size = bytes.count
        return try write("save a \(kind) artifact") { attempt in
            let read = try await attempt.read([Keys.artifactLatest(kind), Keys.auditNext, Keys.blobMeta(sha256)])
            let latest = try read[0].map { try self.decode(LatestRecord.self, $0).version } ?? 0
            let record = VersionRecord(version: latest + 1, sha256: sha256, size: size, createdAt: self.now(), createdBy: actor)
            try await self.stageBlob(bytes, sha256: sha256, in: attempt)
            try attempt.put(Keys.artifact(kind, record.version), record)
            try attempt.put(Keys.artifactLatest(kind), LatestRecord(version: record.version))
            _ = try await attempt.audit(
                at: record.createdAt, actor: actor, action: .artifactPut,
                subject: "artifact/\(kind.rawValue)/\(record.version)",
                detail: ["sha256": .string(sha256), "size": .int(size)])
            return record.artifact(kind)
        }
    }

    /// One version of `kind` with its content, or nil.
    public func artifact(kind: ArtifactKind, version: Int) throws -> Artifact? {
        try read("read \(kind) artifact \(version)") { reader in
            try await self.artifact(kind, version, reader)
        }
    }

    /// Every version of `kind`, oldest first, without content.
    public func artifacts(kind: ArtifactKind) throws -> [ArtifactSummary] {
        try read("list \(kind) artifacts") { reader in
            try await reader.list(Keys.artifactVersions(kind)).map { try self.decode(VersionRecord.self, $0).artifact(kind) }
        }
    }

    /// The highest version of `kind`, or nil.
    public func latestArtifact(kind: ArtifactKind) throws -> Artifact? {
        try read("read the latest \(kind) artifact") { reader in
            guard let latest = try await reader.value(Keys.artifactLatest(kind), as: LatestRecord.self) else { return nil }
            return try await self.artifact(kind, latest.version, reader)
        }
    }

    private func artifact(_ kind: ArtifactKind, _ version: Int, _ reader: Reader) async throws -> Artifact? {
        guard version >= 1, let record = try await reader.value(Keys.artifact(kind, version), as: VersionRecord.self) else {
            return nil
        }
        return Artifact(summary: record.artifact(kind), content: try await loadText(record.sha256, reader: reader))
    }
}
