/// The four kinds of platform artifact; each has its own version sequence from 1.
public enum ArtifactKind: String, Codable, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// One Lua file run before every customer script; its content is the Lua source.
    case runtime
    /// The rules JSON the runtime evaluates; its content is the JSON text.
    case rules
    /// A worker executable; its content is the binary's path.
    case binary
    /// One cohort's policy (`CohortPolicy`): the policy part of a cohort file
    /// (`name`, `order`, `[limits]`, `[gate]`), the same on every host. Version 0 is
    /// what the host's cohort file says.
    case policy

    /// The kind's name as the CLI and API spell it.
    public var description: String { rawValue }

    /// Whether a worker splits its counters by this kind's version as it changes
    /// (`WorkerStats.byVersion`): runtime and rules change under a running worker and
    /// are charged per request. A binary is a worker's for its whole life, and a
    /// policy changes limits rather than code, so for those two a worker's whole
    /// counts go to the version it reports.
    public var isCountedPerVersion: Bool {
        self == .runtime || self == .rules
    }
}
