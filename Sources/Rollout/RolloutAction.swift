/// What the I/O layer must do after a rollout input, in the order given.
public enum RolloutAction: Codable, Sendable, Equatable {
    /// Ship `version` to every slot of stage `stage` (an index into the plan), and
    /// start the stage's measurement window now: the samples passed to `observe`
    /// from here on count from this moment.
    case apply(stage: Int, version: Int)
    /// Start a new measurement window for stage `stage` now (its bake clock
    /// restarted) without shipping anything: forget the counts so far.
    case resetWindow(stage: Int)
    /// Put `toVersion` back on every slot of these stages (every stage that got the
    /// new version), all at once.
    case rollback(toVersion: Int, stages: [Int])
    /// The last stage passed: the new version is everywhere; make it the artifact's
    /// current version.
    case completed
    /// The rollout stopped advancing until an operator resumes it; tell people why.
    case paused(PauseReason)
    /// Append this entry to the rollout's decision log in the store.
    case record(RolloutDecision)
}

/// Why a rollout is paused.
public enum PauseReason: Codable, Sendable, Equatable, CustomStringConvertible {
    /// An operator paused it.
    case requested(by: String)
    /// The stage had too little data by `maxBakeSeconds`; the detail says what was
    /// missing. Resuming restarts the stage's bake.
    case inconclusive(detail: String)
    /// Hosts of a fleet stage stopped reporting (they are named). Resuming restarts
    /// the stage's bake: the window before cannot be measured on them.
    case hostsAway([String])

    /// Whether resuming restarts the stage's bake clock and window.
    var restartsBake: Bool {
        switch self {
        case .requested: false
        case .inconclusive, .hostsAway: true
        }
    }

    /// For people.
    public var description: String {
        switch self {
        case .requested(let by): "paused by \(by)"
        case .inconclusive(let detail): "inconclusive: \(detail)"
        case .hostsAway(let hosts): "host\(hosts.count == 1 ? "" : "s") \(hosts.joined(separator: ", ")) away (no report)"
        }
    }
}
