import BulkheadCore

extension Supervisor {
    // MARK: - Descriptors kept for the workers

    /// Descriptors that must stay free for supervision, whatever else the process
    /// holds: the control API runs in this process, and a flood of its connections
    /// once used every descriptor, so a killed worker could not be replaced ("Too
    /// many open files"). The API's connection cap is computed to leave these free.
    ///
    /// Per worker slot: a replacement's control listener and its copy while it is
    /// spawned (the child's own descriptor table starts as a copy of ours, so its
    /// `/dev/null` and log opens need room too), its handshake connection, and the
    /// connection of a draining predecessor that overlaps it; plus a fixed margin
    /// for the store and its journal, upload checks, the ingress's restart and CLI
    /// calls on the admin socket. Computed when the API starts: a later
    /// `cohort scale` up eats into the fixed margin.
    public func descriptorsToKeepFree() -> Int {
        let slots = queue.sync { pools.values.reduce(0) { $0 + max($1.cohort.workers, $1.slots.count) } }
        return Self.fixedDescriptorMargin + Self.descriptorsPerWorkerSlot * slots
    }

    /// Descriptors a worker slot may need at once beyond its steady connection.
    static let descriptorsPerWorkerSlot = 4
    /// Descriptors kept for everything that is not a worker.
    static let fixedDescriptorMargin = 64
}
