import BulkheadCore
import Foundation

/// A rollout as stored: what it moves, where it stands, and the engine's own state.
///
/// The store does not interpret ``status`` or ``state``: the rollout engine owns both.
/// It only knows whether the rollout has ``finished``, to keep one unfinished rollout
/// per artifact kind.
public struct RolloutRecord: Codable, Sendable, Equatable {
    /// The rollout id, counting from 1, never reused.
    public var id: Int
    /// The kind of artifact it moves.
    public var kind: ArtifactKind
    /// The artifact version it moves to.
    public var version: Int
    /// The version it moves from (0: the version built into the worker binary).
    public var fromVersion: Int
    /// The engine's status word (`running`, `paused`, `rolled-back`, …).
    public var status: String
    /// Whether the rollout is over (succeeded, rolled back, aborted); a paused one is not.
    public var finished: Bool
    /// The engine's serialized state (JSON), kept as it was given.
    public var state: Data
    /// When it was created.
    public var createdAt: Date
    /// When it was last updated.
    public var updatedAt: Date
    /// Who started it (an audit actor).
    public var createdBy: String

    /// Creates a value.
    public init(
        id: Int, kind: ArtifactKind, version: Int, fromVersion: Int, status: String, finished: Bool, state: Data,
        createdAt: Date, updatedAt: Date, createdBy: String
    ) {
        self.id = id
        self.kind = kind
        self.version = version
        self.fromVersion = fromVersion
        self.status = status
        self.finished = finished
        self.state = state
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.createdBy = createdBy
    }
}
