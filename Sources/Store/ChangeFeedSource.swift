import Foundation

/// What a host agent follows to keep its replica: the control store's change feed,
/// read without waiting on its writers. On one machine, ``ChangeFeedReader`` on
/// `DATA/bulkhead.sqlite`; in a fleet, a watch on etcd. One owner calls it (the
/// supervisor's queue); none of it may block for long, except the calls of a
/// ``RemoteChangeFeedSource``, which its owner makes off its queue.
public protocol ChangeFeedSource: AnyObject {
    /// Where it reads from, for people.
    var location: String { get }
    /// Whether it still reads the store it opened: false when that store was
    /// replaced (a file restored under the same name) and a new source must be opened.
    var isCurrent: Bool { get }
    /// A number that changes whenever the store may have changed; the same number as
    /// at the last look that caught up means no news. Cheap: called every tick.
    func changeToken() throws -> Int
    /// The changes after `revision` (at most `limit`) and the rows they name, from one
    /// snapshot; or everything, as a full copy, when `revision` is nil or the feed can
    /// no longer bring it up to date.
    func update(after revision: Int?, limit: Int) throws -> FeedRead
    /// Lets go of what it holds.
    func close()
    /// Since when the source has been cut off from the store it follows, nil while
    /// it follows (or when it cannot tell: a file is there or not).
    var cutOffSince: Date? { get }
    /// Why the source is cut off, for people (its calls may still succeed: a watch
    /// that ended leaves the replica as it is, with nothing to report as an error).
    var sourceProblem: String? { get }
}

/// A change feed read over the network (etcd): `update(after:limit:)` waits on the
/// store for as long as the client's timeouts allow, so its owner calls it from
/// another thread, one call at a time, and applies the result on its own queue.
public protocol RemoteChangeFeedSource: ChangeFeedSource, Sendable {}

extension ChangeFeedSource {
    /// A file cannot be cut off: it opens or it fails.
    public var cutOffSince: Date? { nil }
    /// A file's problems are the errors of its calls.
    public var sourceProblem: String? { nil }
}

extension ChangeFeedReader: ChangeFeedSource {
    /// The control store file.
    public var location: String { path }

    /// Whether the file at ``path`` is still the one this connection reads.
    public var isCurrent: Bool { isCurrentFile }

    /// `PRAGMA data_version`: it changes when another connection commits.
    public func changeToken() throws -> Int {
        try dataVersion()
    }
}
