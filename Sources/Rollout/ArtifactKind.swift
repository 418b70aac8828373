/// The kinds of platform artifact a rollout can move through the pools.
///
/// `BulkheadCore` has no such type, and `Store` (which the rollout engine must not
/// depend on) has its own with the same cases and raw values. Both belong in
/// `BulkheadCore`: once it has one, delete this file and nothing else changes.
public enum ArtifactKind: String, Codable, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// The platform Lua file run before every customer script (`on_request`).
    case runtime
    /// The JSON rules the runtime evaluates.
    case rules
    /// The worker executable (a new bulkhead build).
    case binary

    /// The kind's name as the command line spells it (`--kind rules`).
    public var description: String { rawValue }
}
