import BulkheadCore
import Control
import Foundation
import Rollout
import Store

extension Supervisor {
    // MARK: - The driver (in this process for now)

    /// Creates and starts the rollout driver on its own queue and timer: it reloads
    /// the running rollouts from the store and resumes them. It shares no state with
    /// the supervisor; they meet in the control store and the replica (on the queue).
    func startDriver() {
        let driver = RolloutDriver(
            store: { [unowned self] in try self.store }, replicaPath: configuration.data.replicaFile,
            checks: ArtifactChecker(executable: configuration.workerExecutable),
            cohorts: pools.values.map(\.cohort), logger: logger)
        driver.start()
        driverSlot.withLock { $0 = driver }
    }

    /// The driver; the supervisor creates it in `start()`.
    private var rolloutDriver: Result<RolloutDriver, ControlError> {
        guard let driver else {
            return .failure(ControlError(.controlPlaneUnavailable, "the rollout driver is not running yet; try again"))
        }
        return .success(driver)
    }

    // MARK: - Forwards (the API's routes reach the driver through these)

    /// What the status page shows: the host, each pool's request and error totals
    /// once a second over the last five minutes, and the recent rollouts.
    public func pageData() -> (HostStatus, [String: [(at: Double, requests: Int, errors: Int)]], [(id: Int, status: RolloutStatus)]) {
        let (status, history, driver) = queue.sync { (self.status(), pageHistory, self.driver) }
        return (status, history, driver?.recent(limit: 5) ?? [])
    }

    /// Validates an artifact, stores it as the next version of its kind and starts
    /// rolling it out; returns the rollout id (see `RolloutDriver.startRollout`).
    public func startRollout(kind: ArtifactKind, content: String, actor: String) -> Result<Int, ControlError> {
        rolloutDriver.flatMap { driver in
            // Planned over the pools as they are now (a scale changes them).
            driver.setCohorts(queue.sync { pools.values.map(\.cohort) })
            return driver.startRollout(kind: kind, content: content, actor: actor)
        }
    }

    /// Pause, resume, abort or promote a rollout.
    public func operate(rollout id: Int, command: String, actor: String) -> Result<RolloutStatus, ControlError> {
        guard let command = RolloutDriver.Command(rawValue: command) else {
            return .failure(ControlError(.invalid, "unknown rollout command '\(command)'"))
        }
        return rolloutDriver.flatMap { $0.operate(rollout: id, command: command, actor: actor) }
    }

    /// A rollout's status, running or ended.
    public func rolloutStatus(id: Int) -> Result<RolloutStatus, ControlError> {
        rolloutDriver.flatMap { $0.status(id: id) }
    }
}
