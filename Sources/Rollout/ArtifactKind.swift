/// The kinds of platform artifact a rollout can move through the pools.
///
/// Defined here because `BulkheadCore` has no such type yet; the raw values are the
/// words of the command line (`bulkhead rollout start --kind rules|runtime|binary`).
public enum ArtifactKind: String, Codable, Sendable, CaseIterable, Hashable {
    /// The platform Lua file run before every customer script (`on_request`).
    case runtime
    /// The JSON rules the runtime evaluates.
    case rules
    /// The worker executable (a new bulkhead build).
    case binary
}
