import BulkheadCore
/// Platform artifacts (runtime, rules, binary, policy), versioned from 1 per kind.
///
/// The store keeps what it is given: validating an artifact (syntax, schema, limits)
/// is done before it is put.
public protocol ArtifactStore: Sendable {
    /// Stores `content` as the next version of `kind` and returns it.
    func putArtifact(kind: ArtifactKind, content: String, actor: String) throws -> ArtifactSummary

    /// One version with its content, or nil.
    func artifact(kind: ArtifactKind, version: Int) throws -> Artifact?

    /// Every version of `kind`, oldest first, without content.
    func artifacts(kind: ArtifactKind) throws -> [ArtifactSummary]

    /// The highest version of `kind` with its content, or nil when there is none.
    func latestArtifact(kind: ArtifactKind) throws -> Artifact?
}
