import BulkheadCore

extension DataDirectory {
    /// The SQLite store: `DATA/bulkhead.sqlite`.
    public var storeFile: String { root + "/bulkhead.sqlite" }
}

extension DataDirectory {
    /// The host agent's replica of what its data plane serves: `DATA/host.sqlite`.
    public var replicaFile: String { root + "/host.sqlite" }
}
