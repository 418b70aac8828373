import BulkheadCore
import Foundation

/// Rollouts of platform artifacts, so they survive a supervisor restart.
///
/// The store keeps at most one unfinished rollout per artifact kind ("one rollout per
/// artifact kind runs at a time"); the engine's `status` and `state` are opaque to it.
public protocol RolloutStore: Sendable {
    /// Creates a rollout of artifact `kind` version `version` (which must exist) from
    /// `fromVersion` (0: the built-in one).
    ///
    /// Throws ``StoreError/Kind/conflict`` while another rollout of `kind` is unfinished.
    func createRollout(
        kind: ArtifactKind, version: Int, fromVersion: Int, status: String, state: Data, actor: String
    ) throws -> RolloutRecord

    /// Replaces a rollout's status and state; `finished` marks it over, for good.
    ///
    /// Every update is audited, so persist on transitions (stage passed, paused,
    /// rolled back), not on every tick.
    func updateRollout(id: Int, status: String, state: Data, finished: Bool, actor: String) throws -> RolloutRecord

    /// One rollout, or nil.
    func rollout(id: Int) throws -> RolloutRecord?

    /// The most recent rollouts, newest first, at most `limit`.
    func rollouts(limit: Int) throws -> [RolloutRecord]

    /// The unfinished rollout of `kind` (running or paused), or nil.
    func runningRollout(kind: ArtifactKind) throws -> RolloutRecord?
}
