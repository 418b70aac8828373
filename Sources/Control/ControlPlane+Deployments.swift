import BulkheadCore
import Foundation
import Rollout
import Store

extension ControlPlane {
    /// Stores a checked script as its next version without making it live (a first
    /// version goes live: nothing else could serve). Blocks on the store's write.
    public func storeScriptInactive(_ script: CheckedScript, actor: String) -> Result<ScriptVersion, ControlError> {
        Result {
            let version = try store.putScriptVersionInactive(
                customer: script.customer, name: script.name, source: script.source, actor: actor)
            forgetScriptFile(customer: script.customer, name: script.name)
            return version
        }.mapError(Self.storeFailure)
    }

    /// How plain uploads of `customer`'s scripts go live: its cohort's `[deploy]`.
    public func deployDefaults(ofCohort cohort: String) -> ScriptDeployDefaults {
        self.cohort(named: cohort)?.deploy ?? ScriptDeployDefaults()
    }

    /// Starts a deployment of a stored version of the customer's script, judged by
    /// the gate of the customer's cohort (under its active policy).
    public func startDeployment(
        customer: String, name: String, order: DeploymentOrder, actor: String
    ) async -> Result<DeploymentSnapshot, ControlError> {
        guard let deployments else {
            return .failure(ControlError(.controlPlaneUnavailable, "the control plane is starting; retry"))
        }
        let owner: Customer
        switch self.customer(named: customer) {
        case .success(let found): owner = found
        case .failure(let error): return .failure(error)
        }
        guard let cohort = policyCohort(named: owner.cohort) else {
            return .failure(ControlError(.noPool, "the \(owner.cohort) pool is not configured"))
        }
        if let steps = order.steps, let problem = ScriptDeployDefaults.problem(steps: steps) {
            return .failure(ControlError(.invalid, "invalid steps: \(problem)"))
        }
        return await deployments.start(
            order, customer: customer, name: name, gate: cohort.gate,
            defaultSteps: (cohort.deploy ?? ScriptDeployDefaults()).steps, actor: actor)
    }

    /// Pauses, resumes, aborts or promotes a deployment of the customer's script.
    public func operateDeployment(
        _ operation: DeploymentOperation, id: Int, customer: String, name: String, actor: String
    ) async -> Result<DeploymentSnapshot, ControlError> {
        guard let deployments else {
            return .failure(ControlError(.controlPlaneUnavailable, "the control plane is starting; retry"))
        }
        return await deployments.operate(operation, id: id, customer: customer, name: name, actor: actor)
    }

    /// The deployments of the customer's script, newest first. Blocks on the store.
    public func deployments(customer: String, name: String) -> Result<[DeploymentSnapshot], ControlError> {
        Result {
            guard try store.script(customer: customer, name: name) != nil else { throw ControlError.noSuchScript(name) }
            return try store.deployments(customer: customer, name: name, limit: 100).map(snapshot)
        }.mapError(Self.storeFailure)
    }

    /// One deployment of the customer's script. Blocks on the store.
    public func deployment(customer: String, name: String, id: Int) -> Result<DeploymentSnapshot, ControlError> {
        Result {
            guard let record = try store.deployment(id: id), record.customer == customer, record.name == name else {
                throw ControlError(.notFound, "script '\(name)' has no deployment \(id)")
            }
            return snapshot(record)
        }.mapError(Self.storeFailure)
    }

    /// The script's deployment that has not ended, if any. Blocks on the store.
    public func unfinishedDeployment(customer: String, name: String) -> Result<DeploymentRecord?, ControlError> {
        // At most one is unfinished, and nothing newer can have been made beside it.
        Result { try store.deployments(customer: customer, name: name, limit: 1).first.flatMap { $0.finished ? nil : $0 } }
            .mapError(Self.storeFailure)
    }

    /// The decisions of the script's recent deployments as log lines, oldest first:
    /// what the script's log shows beside its own lines.
    public func deploymentLogLines(customer: String, name: String) -> [String] {
        guard let records = try? store.deployments(customer: customer, name: name, limit: 10) else { return [] }
        var entries: [(time: Double, line: String)] = []
        for record in records {
            guard let machine = try? JSONDecoder().decode(DeploymentMachine.self, from: record.state) else { continue }
            for decision in machine.decisions {
                entries.append((decision.time, "deployment \(record.id) (version \(record.version)): \(decision.message)"))
            }
        }
        for record in records where record.finished {
            let state = try? JSONDecoder().decode(DeploymentMachine.self, from: record.state)
            if state?.state.isFinished != true {
                entries.append((record.updatedAt.timeIntervalSince1970,
                                "deployment \(record.id) (version \(record.version)): \(record.status): its script was rolled back or deleted"))
            }
        }
        let formatter = ISO8601DateFormatter()
        return entries.sorted { $0.time < $1.time }.map { "\(formatter.string(from: Date(timeIntervalSince1970: $0.time))) \($0.line)" }
    }

    private func snapshot(_ record: DeploymentRecord) -> DeploymentSnapshot {
        if !record.finished, let live = deployments?.live(record.id) {
            return DeploymentSnapshot(record: record, machine: live.machine, live: live.report)
        }
        var machine = try? JSONDecoder().decode(DeploymentMachine.self, from: record.state)
        machine?.id = record.id
        return DeploymentSnapshot(record: record, machine: machine, live: nil)
    }
}
