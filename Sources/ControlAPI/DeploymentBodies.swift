import BulkheadCore
import Control
import Foundation
import Rollout
import Store

/// `POST /v1/scripts/{name}/deployments`: which stored version, and how it goes live.
public struct StartDeployment: Codable, Sendable {
    /// The version (stored already, e.g. with `PUT …?live=false`).
    public var version: Int
    /// `immediate` or `gradual` (default: gradual).
    public var strategy: String?
    /// A gradual deployment's shares, percent, growing to 100 (default: the cohort's).
    public var steps: [Double]?
    /// The request header whose value keys the split (default: the client's address).
    public var keyHeader: String?
    /// Thresholds stricter than the cohort's gate (looser ones are ignored).
    public var gate: GateTightening?

    enum CodingKeys: String, CodingKey {
        case version, strategy, steps, gate
        case keyHeader = "key_header"
    }

    /// Creates a request.
    public init(version: Int, strategy: String?, steps: [Double]?, keyHeader: String?, gate: GateTightening?) {
        self.version = version
        self.strategy = strategy
        self.steps = steps
        self.keyHeader = keyHeader
        self.gate = gate
    }

    /// The order it makes, or why it cannot.
    func order() throws(ControlError) -> DeploymentOrder {
        let strategy: ScriptDeployStrategy
        switch self.strategy ?? ScriptDeployStrategy.gradual.rawValue {
        case "shadow":
            throw ControlError(.invalid, "the shadow strategy is not available in this build; use immediate or gradual")
        case let name:
            guard let known = ScriptDeployStrategy(rawValue: name) else {
                throw ControlError(.invalid, "strategy must be immediate or gradual, got '\(name)'")
            }
            strategy = known
        }
        guard version >= 1 else { throw ControlError(.invalid, "version must be 1 or more, got \(version)") }
        return DeploymentOrder(version: version, strategy: strategy, steps: steps, keyHeader: keyHeader, gate: gate)
    }
}

/// One deployment of a script (`GET /v1/scripts/{name}/deployments/{id}`).
public struct DeploymentInfo: Codable, Sendable {
    /// The deployment id.
    public var id: Int
    /// The script's owner.
    public var customer: String
    /// The script.
    public var script: String
    /// The version deployed.
    public var version: Int
    /// The version active when it began.
    public var fromVersion: Int
    /// `running`, `paused`, `completed`, `rolled-back` or `aborted`.
    public var state: String
    /// The candidate's share of requests now, percent.
    public var percent: Double
    /// The shares, percent.
    public var steps: [Double]
    /// The current step, counting from 1.
    public var step: Int
    /// The header that keys the split; absent: the client's address.
    public var keyHeader: String?
    /// The thresholds each step is judged by.
    public var gate: CohortConfiguration.Gate?
    /// The current step's window as last measured, while it runs.
    public var current: CurrentWindow?
    /// The windows of the steps that ended, oldest first.
    public var windows: [StepWindow]
    /// Every decision, oldest first, with the gate's numbers.
    public var decisions: [Decision]
    /// When it was created.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// Who started it.
    public var createdBy: String

    /// What a step measured when it ended.
    public struct StepWindow: Codable, Sendable {
        /// The step, counting from 1.
        public var step: Int
        /// Its share, percent.
        public var percent: Double
        /// When the pool took the share.
        public var startedAt: Date
        /// When it was measured last.
        public var endedAt: Date
        /// The candidate's counts in the window.
        public var candidate: StageSample
        /// The old version's counts over the same window.
        public var baseline: StageSample

        enum CodingKeys: String, CodingKey {
            case step, percent, candidate, baseline
            case startedAt = "started_at"
            case endedAt = "ended_at"
        }

        init(_ window: DeploymentMachine.StepWindow) {
            step = window.step + 1
            percent = window.percent
            startedAt = Date(timeIntervalSince1970: window.startedAt)
            endedAt = Date(timeIntervalSince1970: window.endedAt)
            candidate = window.candidate
            baseline = window.baseline
        }
    }

    /// One decision.
    public struct Decision: Codable, Sendable {
        /// When.
        public var time: Date
        /// `started`, `passed`, `failed`, `inconclusive`, `paused`, `resumed`, `aborted`, `promoted` or `completed`.
        public var event: String
        /// The step concerned, counting from 1.
        public var step: Int?
        /// Its share, percent.
        public var percent: Double?
        /// Who decided: an audit actor, or `gate`.
        public var by: String
        /// The gate's verdict with its numbers, for the gate's decisions and a promotion.
        public var verdict: GateVerdict?
        /// The decision in one sentence.
        public var message: String

        init(_ decision: DeploymentMachine.Decision) {
            time = Date(timeIntervalSince1970: decision.time)
            event = decision.event.rawValue
            step = decision.step.map { $0 + 1 }
            percent = decision.percent
            by = decision.by
            verdict = decision.verdict
            message = decision.message
        }
    }

    /// The current step's window.
    public struct CurrentWindow: Codable, Sendable {
        /// When the pool took the step's share.
        public var startedAt: Date
        /// When it was measured.
        public var measuredAt: Date
        /// The candidate's counts.
        public var candidate: StageSample
        /// The old version's counts over the same window.
        public var baseline: StageSample
        /// The gate's latest verdict on the step.
        public var verdict: GateVerdict?

        enum CodingKeys: String, CodingKey {
            case candidate, baseline, verdict
            case startedAt = "started_at"
            case measuredAt = "measured_at"
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, customer, script, version, state, percent, steps, step, gate, current, windows, decisions
        case fromVersion = "from_version"
        case keyHeader = "key_header"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case createdBy = "created_by"
    }

    /// The body of a deployment.
    public init(_ snapshot: DeploymentSnapshot) {
        let record = snapshot.record
        let machine = snapshot.machine
        id = record.id
        customer = record.customer
        script = record.name
        version = record.version
        fromVersion = record.fromVersion
        // A rollback or a delete of the script ends its deployment in the store alone.
        state = record.finished ? record.status : (machine?.state.rawValue ?? record.status)
        percent = record.finished ? (record.status == DeploymentMachine.State.completed.rawValue ? 100 : 0) : record.percent
        steps = machine?.steps ?? []
        step = (machine?.step ?? 0) + 1
        keyHeader = record.keyHeader
        gate = machine?.gate
        windows = (machine?.windows ?? []).map(StepWindow.init)
        decisions = (machine?.decisions ?? []).map(Decision.init)
        createdAt = record.createdAt
        updatedAt = record.updatedAt
        createdBy = record.createdBy
        current = snapshot.live.map { live in
            CurrentWindow(
                startedAt: Date(timeIntervalSince1970: live.acknowledgedAt), measuredAt: Date(timeIntervalSince1970: live.measuredAt),
                candidate: live.candidate, baseline: live.baseline, verdict: machine?.lastVerdict)
        }
    }
}

/// A script's deployments, newest first.
public struct DeploymentList: Codable, Sendable {
    /// The deployments.
    public var deployments: [DeploymentInfo]
}
