import Synchronization

/// One connection of a run: its place in the configuration and its counts. The
/// thread that runs it writes the counts; reports read them.
final class LoadConnection: Sendable {
    /// Index of the target in the configuration.
    let targetIndex: Int
    /// Number of this connection within its target, from 0.
    let number: Int
    /// The counts, under this connection's own lock.
    let tally = Mutex(ConnectionTally())

    init(targetIndex: Int, number: Int) {
        self.targetIndex = targetIndex
        self.number = number
    }
}
