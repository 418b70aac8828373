/// One entry of a rollout's decision log: what happened, when, to which stage, who
/// or what decided it, and the gate's numbers when the gate decided.
public struct RolloutDecision: Codable, Sendable, Equatable, CustomStringConvertible {
    /// What happened.
    public enum Event: String, Codable, Sendable {
        /// The rollout began with its first stage.
        case started
        /// A stage passed its gate (and the next began, unless frozen).
        case passed
        /// A stage failed its gate, or a host's local guard put it back; the rollout
        /// was rolled back.
        case failed
        /// A stage had too little data by its max bake time; the rollout paused.
        case inconclusive
        /// An operator paused the rollout.
        case paused
        /// An operator resumed the rollout.
        case resumed
        /// An operator aborted the rollout; what got the new version was rolled back.
        case aborted
        /// An operator passed the current stage without the rest of its bake.
        case promoted
        /// A global freeze began: no stage advances until it ends.
        case frozen
        /// The global freeze ended.
        case unfrozen
        /// Every stage passed.
        case completed
        /// A new supervisor took the rollout over; the stage's bake restarted.
        case restored
    }

    /// Seconds on the clock the supervisor injects.
    public var time: Double
    /// What happened.
    public var event: Event
    /// The stage concerned (an index into the plan), if any.
    public var stage: Int?
    /// The stage's display name, if any.
    public var stageName: String?
    /// Who decided: an operator's name, `"gate"` for the health gate, `"freeze"` for
    /// the global freeze, `"supervisor"` for a restart, `"local guard"` for a host's
    /// `LocalGuard`.
    public var by: String
    /// The gate's verdict with its numbers, for gate decisions and for a promotion
    /// (the last verdict before it).
    public var verdict: GateVerdict?
    /// The decision in one sentence.
    public var message: String

    /// Creates an entry.
    public init(
        time: Double, event: Event, stage: Int?, stageName: String?, by: String, verdict: GateVerdict?,
        message: String
    ) {
        self.time = time
        self.event = event
        self.stage = stage
        self.stageName = stageName
        self.by = by
        self.verdict = verdict
        self.message = message
    }

    /// `t=12.3 failed [free canary] by gate: …`.
    public var description: String {
        var text = "t=\(Format.fixed(time, 1)) \(event.rawValue)"
        if let stageName { text += " [\(stageName)]" }
        return text + " by \(by): \(message)"
    }
}
