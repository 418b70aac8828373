import BulkheadCore

extension DataDirectory {
    /// The SQLite store: `DATA/bulkhead.sqlite`.
    public var storeFile: String { root + "/bulkhead.sqlite" }
}
