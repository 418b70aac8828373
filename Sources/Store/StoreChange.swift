import BulkheadCore
import Foundation

/// One change of the control store that a host agent serves from, as the change feed
/// records it: which row changed, not what it became. A reader reads the rows a batch
/// of changes names, so one upload costs one script read, whatever the store holds.
public enum StoreChange: Sendable, Hashable {
    /// A customer was added, moved to another cohort or removed.
    case customer(String)
    /// A script's active version changed (upload, rollback), it was deleted, or its
    /// quarantine flag changed.
    case script(customer: String, name: String)
    /// The version of an artifact kind that a pool runs.
    case activeArtifact(ArtifactKind, pool: String)
    /// A rollout record was created or updated.
    case rollout(Int)
    /// Another host-wide setting changed (`workers.POOL`, …); names the key.
    case setting(String)

    /// The change a write of the setting `key` makes, or nil for a key the data plane
    /// does not serve from.
    package static func ofSetting(_ key: String) -> StoreChange {
        // The freeze and pins are not here: break glass lives in each host's replica
        // (`HostOverrides`), never in the control store, so the feed carries neither.
        for kind in ArtifactKind.allCases {
            let prefix = SettingKey.activeVersion(kind, pool: "")
            if key.hasPrefix(prefix), key.count > prefix.count {
                return .activeArtifact(kind, pool: String(key.dropFirst(prefix.count)))
            }
        }
        return .setting(key)
    }
}

/// A change with its place in the feed.
public struct FeedEntry: Sendable, Hashable {
    /// The feed's revision: grows by at least one with each change, never reused.
    public var revision: Int
    /// What changed.
    public var change: StoreChange
    /// When the change was committed (the store's clock).
    public var at: Date

    /// Creates a value.
    public init(revision: Int, change: StoreChange, at: Date) {
        self.revision = revision
        self.change = change
        self.at = at
    }
}

/// Where the feed stands: the newest revision and the oldest one still kept.
public struct FeedBounds: Sendable, Equatable {
    /// The newest revision written, 0 when none was.
    public var latest: Int
    /// The oldest revision still in the feed, or nil when the feed holds none. A reader
    /// whose applied revision is below `oldest - 1` missed pruned changes and must copy
    /// everything instead.
    public var oldest: Int?

    /// Creates a value.
    public init(latest: Int, oldest: Int?) {
        self.latest = latest
        self.oldest = oldest
    }

    /// Whether a reader that applied everything up to `revision` can catch up from the feed alone.
    public func canCatchUp(from revision: Int) -> Bool {
        guard revision < latest else { return revision == latest }
        guard let oldest else { return false }
        return revision >= oldest - 1
    }
}
