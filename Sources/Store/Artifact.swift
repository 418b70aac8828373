import BulkheadCore
import Foundation

/// One version of a platform artifact, without its content.
public struct ArtifactSummary: Codable, Sendable, Equatable {
    /// The artifact kind.
    public var kind: ArtifactKind
    /// The version, counting from 1 per kind.
    public var version: Int
    /// SHA-256 hex of the content's UTF-8 bytes.
    public var sha256: String
    /// Size of the content in bytes.
    public var size: Int
    /// When it was stored.
    public var createdAt: Date
    /// Who stored it (an audit actor).
    public var createdBy: String

    /// Creates a value.
    public init(kind: ArtifactKind, version: Int, sha256: String, size: Int, createdAt: Date, createdBy: String) {
        self.kind = kind
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.createdAt = createdAt
        self.createdBy = createdBy
    }
}

/// One version of a platform artifact with its content.
public struct Artifact: Codable, Sendable, Equatable {
    /// Kind, version, digest and origin.
    public var summary: ArtifactSummary
    /// Lua source (runtime), rules JSON (rules), or the path of a worker executable (binary).
    public var content: String

    /// Creates a value.
    public init(summary: ArtifactSummary, content: String) {
        self.summary = summary
        self.content = content
    }

    /// The artifact kind.
    public var kind: ArtifactKind { summary.kind }
    /// The version.
    public var version: Int { summary.version }
}
