import BulkheadCore

/// A customer script's gradual deployment: a candidate version takes a growing
/// share of the script's requests, step by step, each step judged by the same
/// health gate as a platform rollout's stage — the candidate against the active
/// version over the same window — and rolled back at the first failed step.
///
/// Pure, like `RolloutMachine`: the driver feeds it the host's reports and the
/// clock, and carries out the actions it returns (the store's split, the end).
/// Codable: it is the deployment record's state, so a deployment survives a
/// restart of the control plane where it stood.
public struct DeploymentMachine: Codable, Sendable, Equatable {
    /// Where a deployment stands. The raw values are the API's `state`.
    public enum State: String, Codable, Sendable {
        case running
        /// Stopped by an operator, or by a step short of traffic past its max bake:
        /// the split holds, no step passes or fails.
        case paused
        /// Every step passed (or an operator promoted it): the candidate is active.
        case completed
        /// A step failed its gate: the old version serves every request again.
        case rolledBack = "rolled-back"
        /// An operator ended it: the old version serves every request again.
        case aborted

        /// Whether the deployment is over.
        public var isFinished: Bool { self == .completed || self == .rolledBack || self == .aborted }
    }

    /// What the driver must do after an event.
    public enum Action: Sendable, Equatable {
        /// Give the candidate this share of requests (percent).
        case setShare(Double)
        /// Make the candidate the active version, for every request.
        case promote
        /// Put every request back on the old version.
        case revert
        /// Store the machine (a transition without a change of the split).
        case persist
    }

    /// One entry of the decision log.
    public struct Decision: Codable, Sendable, Equatable {
        /// What happened.
        public enum Event: String, Codable, Sendable {
            case started, passed, failed, inconclusive, paused, resumed, aborted, promoted, completed
        }

        /// Wall-clock seconds.
        public var time: Double
        /// What happened.
        public var event: Event
        /// The step concerned (an index into `steps`), if any.
        public var step: Int?
        /// The step's share, percent.
        public var percent: Double?
        /// Who decided: an operator (an audit actor), or `"gate"`.
        public var by: String
        /// The gate's verdict with its numbers, for the gate's decisions and for a
        /// promotion (the last verdict before it).
        public var verdict: GateVerdict?
        /// The decision in one sentence.
        public var message: String
    }

    /// What a step measured when it ended.
    public struct StepWindow: Codable, Sendable, Equatable {
        /// The step (an index into `steps`).
        public var step: Int
        /// Its share, percent.
        public var percent: Double
        /// When the pool took the share (the host's clock).
        public var startedAt: Double
        /// When the window was measured last.
        public var endedAt: Double
        /// The candidate's requests and script errors in the window.
        public var candidate: StageSample
        /// The old version's, over the same window.
        public var baseline: StageSample
    }

    /// The deployment id (the store's: a machine made before its record has 0, and
    /// the driver sets the record's).
    public var id: Int
    /// The candidate version.
    public let version: Int
    /// The version active when it began.
    public let fromVersion: Int
    /// The shares, percent, growing; the last is 100.
    public let steps: [Double]
    /// The thresholds each step is judged by: the cohort's gate, tightened by the
    /// deployment's own.
    public let gate: CohortConfiguration.Gate
    /// Where it stands.
    public private(set) var state: State
    /// The current step (an index into `steps`).
    public private(set) var step: Int
    /// When the current step was set (wall clock).
    public private(set) var stepSetAt: Double
    /// When an operator resumed it last: a step's max bake counts from here at the
    /// earliest, so a resumed step short of traffic gets another max bake.
    public private(set) var resumedAt: Double?
    /// The old version's sample of the last step that had one: the baseline of the
    /// 100% step, where the old version serves nothing.
    public private(set) var lastBaseline: StageSample?
    /// The windows of the steps that ended, oldest first.
    public private(set) var windows: [StepWindow]
    /// Every decision, oldest first.
    public private(set) var decisions: [Decision]
    /// The latest verdict of the current step (not a decision: kept for display).
    public private(set) var lastVerdict: GateVerdict?

    /// Checks a list of steps: each in (0, 100], growing, the last 100.
    public static func validate(steps: [Double]) throws(DeploymentError) {
        if let problem = ScriptDeployDefaults.problem(steps: steps) { throw DeploymentError.invalidSteps(problem) }
    }

    /// A deployment at its first step.
    public init(
        id: Int, version: Int, fromVersion: Int, steps: [Double], gate: CohortConfiguration.Gate, by: String, now: Double
    ) throws(DeploymentError) {
        try Self.validate(steps: steps)
        self.id = id
        self.version = version
        self.fromVersion = fromVersion
        self.steps = steps
        self.gate = gate
        state = .running
        step = 0
        stepSetAt = now
        windows = []
        decisions = []
        decisions.append(Decision(
            time: now, event: .started, step: 0, percent: steps[0], by: by, verdict: nil,
            message: "version \(version) takes \(Format.fixed(steps[0], 2))% of requests (from version \(fromVersion))"))
    }

    /// The current step's share, percent (0 once it is over but completed: 100).
    public var percent: Double {
        switch state {
        case .running, .paused: steps[step]
        case .completed: 100
        case .rolledBack, .aborted: 0
        }
    }

    // MARK: - The gate

    /// Judges the current step on the host's report; returns what to do. A report
    /// on another share, or on a window that began before the step was set, is stale
    /// and changes nothing.
    public mutating func observe(_ report: DeploymentReport, now: Double) -> [Action] {
        guard state == .running, report.deployment == id, report.percent == steps[step] else { return [] }
        let baseline = report.baseline.requests > 0 ? report.baseline : lastBaseline
        let bakeFrom = max(report.acknowledgedAt, resumedAt ?? report.acknowledgedAt)
        let verdict = HealthGate.evaluate(
            gate: gate, stage: report.candidate, baseline: baseline,
            elapsedSeconds: report.measuredAt - bakeFrom, knownSignatures: Set(report.knownSignatures))
        lastVerdict = verdict
        let window = StepWindow(
            step: step, percent: steps[step], startedAt: report.acknowledgedAt, endedAt: report.measuredAt,
            candidate: report.candidate, baseline: report.baseline)
        switch verdict.outcome {
        case .keepBaking:
            return []
        case .fail:
            windows.append(window)
            state = .rolledBack
            decisions.append(Decision(
                time: now, event: .failed, step: step, percent: steps[step], by: "gate", verdict: verdict,
                message: "step \(step + 1) (\(Format.fixed(steps[step], 2))%) failed: "
                    + verdict.reasons.joined(separator: "; ") + "; rolled back to version \(fromVersion)"))
            return [.revert]
        case .inconclusive:
            state = .paused
            decisions.append(Decision(
                time: now, event: .inconclusive, step: step, percent: steps[step], by: "gate", verdict: verdict,
                message: "step \(step + 1) (\(Format.fixed(steps[step], 2))%) paused: "
                    + verdict.reasons.joined(separator: "; ")))
            return [.persist]
        case .pass:
            windows.append(window)
            if report.baseline.requests > 0 { lastBaseline = report.baseline }
            decisions.append(Decision(
                time: now, event: .passed, step: step, percent: steps[step], by: "gate", verdict: verdict,
                message: "step \(step + 1) (\(Format.fixed(steps[step], 2))%) passed: " + verdict.reasons.joined(separator: "; ")))
            return advance(now: now, by: "gate")
        }
    }

    private mutating func advance(now: Double, by: String) -> [Action] {
        guard step + 1 < steps.count else {
            state = .completed
            lastVerdict = nil
            decisions.append(Decision(
                time: now, event: .completed, step: step, percent: 100, by: by, verdict: nil,
                message: "version \(version) serves every request"))
            return [.promote]
        }
        step += 1
        stepSetAt = now
        lastVerdict = nil
        return [.setShare(steps[step])]
    }

    // MARK: - Operators

    /// Stops the deployment where it stands (the split holds).
    public mutating func pause(by: String, now: Double) throws(DeploymentError) -> [Action] {
        guard state == .running else { throw DeploymentError.notAllowed(id: id, state: state, action: "pause") }
        state = .paused
        decisions.append(Decision(
            time: now, event: .paused, step: step, percent: steps[step], by: by, verdict: lastVerdict,
            message: "paused by \(by) at step \(step + 1) (\(Format.fixed(steps[step], 2))%)"))
        return [.persist]
    }

    /// Goes on from a pause; the step's max bake counts again from now.
    public mutating func resume(by: String, now: Double) throws(DeploymentError) -> [Action] {
        guard state == .paused else { throw DeploymentError.notAllowed(id: id, state: state, action: "resume") }
        state = .running
        resumedAt = now
        decisions.append(Decision(
            time: now, event: .resumed, step: step, percent: steps[step], by: by, verdict: nil,
            message: "resumed by \(by) at step \(step + 1) (\(Format.fixed(steps[step], 2))%)"))
        return [.persist]
    }

    /// Ends it: every request goes back to the old version.
    public mutating func abort(by: String, now: Double) throws(DeploymentError) -> [Action] {
        guard !state.isFinished else { throw DeploymentError.notAllowed(id: id, state: state, action: "abort") }
        state = .aborted
        decisions.append(Decision(
            time: now, event: .aborted, step: step, percent: steps[step], by: by, verdict: lastVerdict,
            message: "aborted by \(by) at step \(step + 1) (\(Format.fixed(steps[step], 2))%); version \(fromVersion) serves every request"))
        return [.revert]
    }

    /// Skips the rest: the candidate serves every request now.
    public mutating func promote(by: String, now: Double) throws(DeploymentError) -> [Action] {
        guard !state.isFinished else { throw DeploymentError.notAllowed(id: id, state: state, action: "promote") }
        decisions.append(Decision(
            time: now, event: .promoted, step: step, percent: steps[step], by: by, verdict: lastVerdict,
            message: "promoted by \(by) at step \(step + 1) (\(Format.fixed(steps[step], 2))%)"))
        state = .completed
        lastVerdict = nil
        return [.promote]
    }
}

/// Why a deployment cannot be made or operated.
public enum DeploymentError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The steps are not a growing list of percentages ending at 100.
    case invalidSteps(String)
    /// The operation does not apply in the deployment's state.
    case notAllowed(id: Int, state: DeploymentMachine.State, action: String)

    public var description: String {
        switch self {
        case .invalidSteps(let message): "invalid steps: \(message)"
        case .notAllowed(let id, let state, let action): "deployment \(id) is \(state.rawValue): cannot \(action) it"
        }
    }
}
