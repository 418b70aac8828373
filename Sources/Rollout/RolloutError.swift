/// Why a rollout refused an operation. Nothing changed when one is thrown.
public enum RolloutError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The plan has no stage (no pool with a worker).
    case emptyPlan
    /// A stage of the plan names no worker slot.
    case stageWithoutSlots(stage: Int, name: String)
    /// The new version is the one already running.
    case sameVersion(Int)
    /// The clock value is not a finite number.
    case invalidTime(Double)
    /// The operation does not apply in the rollout's state.
    case invalidTransition(operation: String, state: RolloutMachine.State, reason: String)
    /// The operation would advance the rollout during a global freeze.
    case frozen(operation: String)

    /// What failed and what to do.
    public var description: String {
        switch self {
        case .emptyPlan:
            "the rollout plan has no stage: no pool has a worker"
        case .stageWithoutSlots(let stage, let name):
            "stage \(stage) (\(name)) of the rollout plan has no worker slot"
        case .sameVersion(let version):
            "version \(version) is already the current one: nothing to roll out"
        case .invalidTime(let now):
            "the clock value \(now) is not a finite number of seconds"
        case .invalidTransition(let operation, let state, let reason):
            "cannot \(operation) a rollout that is \(state): \(reason)"
        case .frozen(let operation):
            "cannot \(operation) during a freeze: rollouts do not advance until `bulkhead break-glass unfreeze`"
        }
    }
}
