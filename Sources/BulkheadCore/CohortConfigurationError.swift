/// A cohort file that cannot be used: names the file, the key and the problem.
public struct CohortConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file, as given (e.g. `cohorts/free.toml`).
    public var file: String
    /// The dotted key at fault (`limits.memory_mb`), or nil for the file as a whole.
    public var key: String?
    /// What is wrong, and what would be right.
    public var problem: String

    /// Creates an error.
    public init(file: String, key: String?, problem: String) {
        self.file = file
        self.key = key
        self.problem = problem
    }

    /// One line for a person: `cohorts/free.toml: limits.memory_mb: must be 1...4096, got 0`.
    public var description: String {
        if let key { return "\(file): \(key): \(problem)" }
        return "\(file): \(problem)"
    }
}
