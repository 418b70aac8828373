import Etcd
import Foundation

/// Settings of an ``EtcdStore``; the defaults suit `bulkhead control --etcd`.
public struct EtcdStoreConfiguration: Sendable {
    /// The largest script source or artifact content accepted, in bytes, as
    /// `SQLiteStoreConfiguration.maximumContentBytes`: the cohorts' `max_script_kb` go
    /// up to 16 MiB; the API enforces each cohort's own limit first.
    public var maximumContentBytes: Int = 16 * 1024 * 1024

    /// The size of one chunk of a stored source or artifact. etcd refuses a request
    /// above its `--max-request-bytes` (1.5 MiB by default), so content is written in
    /// chunks of at most this many bytes, one request each.
    public var chunkBytes: Int = 1024 * 1024

    /// How many times a write is tried when another writer changed what it read
    /// (a compare of its transaction failed) before it fails as contended.
    public var maximumAttempts: Int = 64

    /// The time written into `createdAt`, `updatedAt` and the audit log (rounded to
    /// the millisecond, as the SQLite store keeps it).
    public var clock: @Sendable () -> Date = { Date() }

    /// A condition every write of the store carries, in its own transaction: the
    /// rollout driver's leadership (`EtcdElection.fence`). While it does not hold, a
    /// write is refused (``StoreError`` "fenced") and nothing is written, so a leader
    /// paused past its lease cannot write once it resumes. Nil for the API's writes,
    /// which any control process may make.
    public var fence: (@Sendable () -> Compare)?
    /// The defaults.
    public init() {}
}
