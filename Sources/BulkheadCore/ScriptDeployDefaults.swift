/// How a customer's script versions go live.
public enum ScriptDeployStrategy: String, Codable, Sendable, CaseIterable {
    /// On every worker at once.
    case immediate
    /// Step by step, a growing share of requests, each step under the cohort's gate.
    case gradual
}

/// The cohort file's `[deploy]` table: how a plain upload of a script that already
/// has a version goes live (a first version always goes live at once: there is
/// nothing to compare it with).
public struct ScriptDeployDefaults: Codable, Sendable, Equatable {
    /// The strategy of plain uploads.
    public var strategy: ScriptDeployStrategy
    /// The shares of a gradual deployment, percent.
    public var steps: [Double]

    /// The steps when neither the cohort nor the request names any.
    public static let defaultSteps: [Double] = [1, 10, 50, 100]

    /// Creates defaults.
    public init(strategy: ScriptDeployStrategy = .immediate, steps: [Double] = Self.defaultSteps) {
        self.strategy = strategy
        self.steps = steps
    }

    /// Why `steps` cannot be a deployment's steps (each above 0 and at most 100,
    /// growing, the last 100, at most 20), or nil when they can.
    public static func problem(steps: [Double]) -> String? {
        guard let last = steps.last else { return "at least one step is needed" }
        guard steps.count <= 20 else { return "at most 20 steps, got \(steps.count)" }
        for value in steps where !(value > 0 && value <= 100) {
            return "each step is a percentage above 0 and at most 100, got \(value)"
        }
        for (earlier, later) in zip(steps, steps.dropFirst()) where later <= earlier {
            return "steps must grow: \(later) after \(earlier)"
        }
        guard last == 100 else { return "the last step must be 100, got \(last)" }
        return nil
    }
}
