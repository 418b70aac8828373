/// The store the control plane writes: everything a ``BulkheadStore`` holds, and
/// where its change feed stands. On one machine it is ``SQLiteStore``
/// (`DATA/bulkhead.sqlite`); in a fleet, etcd.
public protocol ControlStore: BulkheadStore {
    /// Where the store is, for people: a file, or etcd's endpoints and key prefix.
    var location: String { get }
    /// The revision of the newest change. A host agent that follows the store has
    /// applied a change once its applied revision reaches the change's.
    func latestRevision() throws -> Int
}

extension SQLiteStore: ControlStore {
    /// The store's file.
    public var location: String { path }

    /// The change feed's newest revision.
    public func latestRevision() throws -> Int {
        try feedBounds().latest
    }
}
