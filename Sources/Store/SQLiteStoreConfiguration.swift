import Foundation

/// Settings of an ``SQLiteStore``; the defaults suit the supervisor and the CLI.
public struct SQLiteStoreConfiguration: Sendable {
    /// How long a write waits for another process (a break-glass CLI beside the
    /// supervisor) that holds the write lock, before failing as unavailable.
    public var busyTimeoutSeconds: Double = 5

    /// Caps the database at this many pages (SQLite's `max_page_count`); a write that
    /// would grow it past the cap fails as a full disk does. Nil: no cap but the disk.
    /// SQLite never lowers the cap below the pages already in use.
    public var maximumPageCount: Int? = nil

    /// The largest script source or artifact content accepted, in bytes. The cohorts'
    /// `max_script_kb` go up to 16 MiB; the API enforces each cohort's own limit first.
    public var maximumContentBytes: Int = 16 * 1024 * 1024

    /// Whether opening creates a missing store (and its directory). `bulkhead serve`
    /// creates one; a command that only reads, or acts on an existing host (break
    /// glass, `events`), sets this to false: a mistyped `--data` must be an error
    /// naming the path, not an empty store that answers "nothing is frozen".
    public var createIfMissing = true

    /// Concurrent reader connections.
    public var maximumReaderCount: Int = 4

    /// The time written into `created_at`, `updated_at` and the audit log.
    public var clock: @Sendable () -> Date = { Date() }

    /// The defaults.
    public init() {}
}
