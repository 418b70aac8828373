import BulkheadCore
import Dispatch
import Foundation
import Logging
import Rollout
import Store

/// What a deployment request asks for.
public struct DeploymentOrder: Sendable, Equatable {
    /// The version to deploy (stored already).
    public var version: Int
    /// How.
    public var strategy: ScriptDeployStrategy
    /// The shares of a gradual deployment, percent (nil: the cohort's `[deploy]` steps).
    public var steps: [Double]?
    /// The request header that keys the split (nil: the client's address).
    public var keyHeader: String?
    /// Thresholds stricter than the cohort's.
    public var gate: GateTightening?

    /// Creates an order.
    public init(version: Int, strategy: ScriptDeployStrategy, steps: [Double]? = nil, keyHeader: String? = nil, gate: GateTightening? = nil) {
        self.version = version
        self.strategy = strategy
        self.steps = steps
        self.keyHeader = keyHeader
        self.gate = gate
    }
}

/// What an operator or a customer can do to a deployment.
public enum DeploymentOperation: String, Sendable, CaseIterable {
    case pause, resume, abort, promote
}

/// A deployment as the API shows it: the stored record, the machine it holds, and
/// the host's latest report on its current step (nil when none is at hand).
public struct DeploymentSnapshot: Sendable {
    /// As stored.
    public var record: DeploymentRecord
    /// The engine's state (nil if the record's state cannot be read).
    public var machine: DeploymentMachine?
    /// The current step's window as last reported, while it runs.
    public var live: DeploymentReport?
}

/// The deployment driver: owns the unfinished script deployments' machines, starts
/// and operates them, and judges each step on the hosts' `DeploymentReport`s.
///
/// Like `RolloutDriver`, it talks to hosts only through the store (the split it
/// writes reaches the workers through the change feed) and their reports (the host
/// replica on one machine, `FleetReports` in a fleet). It keeps nothing a restart
/// would lose: every transition is stored before it is acted on, and a restarted
/// driver reads the unfinished deployments back where they stood.
///
/// Every stored property below `queue` is touched only on `queue`.
public final class DeploymentDriver: @unchecked Sendable {
    private let queue = DispatchQueue(label: "bulkhead.control.deployments")
    private let openStore: @Sendable () throws -> any ControlStore
    private let replicaPath: String
    private let clock: @Sendable () -> Double
    private let logger: Logger
    private let leads: @Sendable () -> Bool
    private let fleet: FleetReports?

    /// The unfinished deployments' machines, by id (on the queue).
    private var running: [Int: DeploymentMachine] = [:]
    /// The latest report on each, for display (on the queue).
    private var latest: [Int: DeploymentReport] = [:]
    /// Whether the stored deployments were read since this driver last began to lead.
    private var loaded = false
    private var reader: HostReplicaReader?
    private var problem: String?
    private var timer: DispatchSourceTimer?

    /// Creates a driver; nothing runs until `start()`. The parameters are
    /// `RolloutDriver`'s.
    public init(
        store: @escaping @Sendable () throws -> any ControlStore, replicaPath: String, logger: Logger,
        clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
        leads: @escaping @Sendable () -> Bool = { true }, fleet: FleetReports? = nil
    ) {
        self.openStore = store
        self.replicaPath = replicaPath
        self.logger = logger
        self.clock = clock
        self.leads = leads
        self.fleet = fleet
    }

    /// Drives every `interval` seconds on the driver's own timer (nil: only `drive()`).
    public func start(interval: Double? = 0.2) {
        queue.sync {
            guard let interval else { return }
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now() + interval, repeating: interval)
            timer.setEventHandler { [weak self] in self?.driveOnQueue() }
            timer.resume()
            self.timer = timer
        }
    }

    /// Stops the timer; what is stored stays.
    public func stop() {
        queue.sync {
            timer?.cancel()
            timer = nil
            reader = nil
        }
    }

    /// Drives once now.
    public func drive() {
        queue.sync { driveOnQueue() }
    }

    // MARK: - Starting and operating

    /// Starts deploying `order.version` of a customer's script under `gate` (its
    /// cohort's), in `defaultSteps` unless the order names steps; returns the new
    /// deployment. An immediate deployment is over
    /// (completed) when this returns.
    public func start(
        _ order: DeploymentOrder, customer: String, name: String, gate: CohortConfiguration.Gate, defaultSteps: [Double],
        actor: String
    ) async -> Result<DeploymentSnapshot, ControlError> {
        await onQueue { [self] in
            guard leads() else { return .failure(RolloutDriver.following) }
            do {
                let store = try openStore()
                try loadIfNeeded(store)
                guard let script = try store.script(customer: customer, name: name) else {
                    return .failure(ControlError.noSuchScript(name))
                }
                let steps = order.strategy == .immediate ? [100] : (order.steps ?? defaultSteps)
                let now = clock()
                var machine = try DeploymentMachine(
                    id: 0, version: order.version, fromVersion: script.activeVersion, steps: steps,
                    gate: (order.gate ?? GateTightening()).applied(to: gate), by: actor, now: now)
                let keyHeader = order.keyHeader.map { $0.lowercased() }
                if let keyHeader, keyHeader.isEmpty || !keyHeader.utf8.allSatisfy(Self.isTokenByte) {
                    return .failure(ControlError(.invalid, "key_header must be a header name, got '\(keyHeader)'"))
                }
                var record = try store.createDeployment(
                    customer: customer, name: name, version: order.version, keyHeader: keyHeader,
                    percent: order.strategy == .immediate ? 0 : steps[0], status: machine.state.rawValue,
                    state: try JSONEncoder().encode(machine), actor: actor)
                machine.id = record.id
                logger.info("deployment started", metadata: [
                    "id": "\(record.id)", "script": "\(customer)/\(name)", "version": "\(order.version)",
                    "from": "\(script.activeVersion)", "strategy": "\(order.strategy.rawValue)",
                ])
                if order.strategy == .immediate {
                    let actions = try machine.promote(by: actor, now: now)
                    guard let promoted = perform(actions, machine: machine, store: store) else {
                        // Stored as running: the driver takes it up again and promotes it.
                        running[record.id] = try? JSONDecoder().decode(DeploymentMachine.self, from: record.state)
                        running[record.id]?.id = record.id
                        return .failure(ControlError(
                            .controlPlaneUnavailable,
                            "deployment \(record.id) is stored but the store did not take its promotion; promote it again"))
                    }
                    record = promoted
                } else {
                    running[record.id] = machine
                }
                return .success(DeploymentSnapshot(record: record, machine: machine, live: nil))
            } catch let error as DeploymentError {
                return .failure(ControlError(.invalid, "\(error)"))
            } catch {
                return .failure(.fromStore(error))
            }
        }
    }

    /// Pauses, resumes, aborts or promotes deployment `id` of the customer's script.
    public func operate(
        _ operation: DeploymentOperation, id: Int, customer: String, name: String, actor: String
    ) async -> Result<DeploymentSnapshot, ControlError> {
        await onQueue { [self] in
            guard leads() else { return .failure(RolloutDriver.following) }
            do {
                let store = try openStore()
                try loadIfNeeded(store)
                guard let record = try store.deployment(id: id), record.customer == customer, record.name == name else {
                    return .failure(ControlError(.notFound, "script '\(name)' has no deployment \(id)"))
                }
                if record.finished { forget(id) }
                guard var machine = running[id] else {
                    return .failure(ControlError(.conflict, "deployment \(id) is \(record.status): cannot \(operation.rawValue) it"))
                }
                let now = clock()
                let actions: [DeploymentMachine.Action] =
                    switch operation {
                    case .pause: try machine.pause(by: actor, now: now)
                    case .resume: try machine.resume(by: actor, now: now)
                    case .abort: try machine.abort(by: actor, now: now)
                    case .promote: try machine.promote(by: actor, now: now)
                    }
                guard let updated = perform(actions, machine: machine, store: store) else {
                    return .failure(ControlError(.controlPlaneUnavailable, "the store did not take the change; try again"))
                }
                return .success(DeploymentSnapshot(record: updated, machine: running[id] ?? machine, live: latest[id]))
            } catch let error as DeploymentError {
                return .failure(ControlError(.conflict, "\(error)"))
            } catch {
                return .failure(.fromStore(error))
            }
        }
    }

    /// Deployment `id`'s machine as the driver holds it (with the gate's latest
    /// verdict, which is stored only on transitions) and the latest report on its
    /// step, while it is unfinished and this driver leads.
    public func live(_ id: Int) -> (machine: DeploymentMachine, report: DeploymentReport?)? {
        queue.sync { running[id].map { ($0, latest[id]) } }
    }

    // MARK: - Driving (on the queue)

    private func driveOnQueue() {
        guard leads() else {
            // Another control process drives; read them again when this one leads.
            running = [:]
            latest = [:]
            loaded = false
            return
        }
        let store: any ControlStore
        do {
            store = try openStore()
            try loadIfNeeded(store)
        } catch {
            note("cannot read the deployments; they do not advance", error)
            return
        }
        guard !running.isEmpty else { return }
        // A rollback or a delete of the script, or the removal of its customer, ends
        // its deployment in the store.
        do {
            let unfinished = Set(try store.unfinishedDeployments().map(\.id))
            for id in running.keys where !unfinished.contains(id) {
                logger.info("deployment ended by a change of its script (a rollback, a delete or its customer's removal)", metadata: ["id": "\(id)"])
                forget(id)
            }
        } catch {
            note("cannot read the deployments; they do not advance", error)
            return
        }
        let reports = fleet?.deploymentReports(freshWithin: RolloutDriver.hostPatience) ?? hostReports()
        let now = clock()
        for id in running.keys.sorted() {
            guard var machine = running[id], let report = reports[id] else { continue }
            latest[id] = report
            let before = machine.decisions.count
            let actions = machine.observe(report, now: now)
            if actions.isEmpty {
                running[id] = machine
                continue
            }
            for decision in machine.decisions.dropFirst(before) {
                let level: Logger.Level = decision.event == .failed ? .error : .info
                logger.log(level: level, "deployment decision", metadata: ["id": "\(id)", "decision": "\(decision.message)"])
            }
            if perform(actions, machine: machine, store: store) == nil {
                // Not stored: the machine stays as it was and decides again next time.
                continue
            }
        }
    }

    /// Drops a deployment that ended.
    private func forget(_ id: Int) {
        running[id] = nil
        latest[id] = nil
    }

    /// Reads the unfinished deployments once per leadership.
    private func loadIfNeeded(_ store: any ControlStore) throws {
        guard !loaded else { return }
        var machines: [Int: DeploymentMachine] = [:]
        for record in try store.unfinishedDeployments() {
            do {
                var machine = try JSONDecoder().decode(DeploymentMachine.self, from: record.state)
                machine.id = record.id
                machines[record.id] = machine
            } catch {
                logger.error("a deployment's state cannot be read; it stays as stored", metadata: [
                    "id": "\(record.id)", "error": "\(error)",
                ])
            }
        }
        running = machines
        loaded = true
        if !machines.isEmpty {
            logger.info("deployments resumed", metadata: ["ids": "\(machines.keys.sorted())"])
        }
    }

    /// Stores what the machine decided; returns the stored record, or nil when the
    /// store did not take it (the driver's copy of the machine is then left as it was).
    @discardableResult
    private func perform(_ actions: [DeploymentMachine.Action], machine: DeploymentMachine, store: any ControlStore) -> DeploymentRecord? {
        var percent = machine.percent
        var end: DeploymentEnd?
        for action in actions {
            switch action {
            case .setShare(let share): percent = share
            case .promote: end = .promote
            case .revert: end = .revert
            case .persist: break
            }
        }
        do {
            let record = try store.updateDeployment(
                id: machine.id, status: machine.state.rawValue, state: try JSONEncoder().encode(machine),
                percent: end == nil ? percent : 0, end: end, actor: "deployment \(machine.id)")
            if machine.state.isFinished {
                running[machine.id] = nil
                latest[machine.id] = nil
            } else {
                running[machine.id] = machine
            }
            problem = nil
            return record
        } catch {
            note("cannot store deployment \(machine.id)'s decision; it is taken again", error)
            return nil
        }
    }

    /// The host's latest reports, by deployment; none while the replica cannot be read.
    private func hostReports() -> [Int: DeploymentReport] {
        do {
            if reader == nil { reader = try HostReplicaReader(path: replicaPath) }
            guard let reader else { return [:] }
            var reports: [Int: DeploymentReport] = [:]
            for (id, data) in try reader.deploymentReports() {
                if let report = try? JSONDecoder().decode(DeploymentReport.self, from: data) { reports[id] = report }
            }
            return reports
        } catch {
            reader = nil
            note("cannot read the host's deployment reports; deployments do not advance", error)
            return [:]
        }
    }

    private func note(_ message: String, _ error: any Error) {
        let text = "\(message): \(error)"
        guard problem != text else { return }
        problem = text
        logger.error("\(message)", metadata: ["error": "\(error)"])
    }

    private func onQueue<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: work()) }
        }
    }

    /// A byte of an HTTP token (a header name).
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."): true
        default: false
        }
    }
}
