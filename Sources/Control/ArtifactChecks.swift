import BulkheadCore

/// The producer's checks of an artifact that need a process of their own (a
/// runtime's Lua syntax is compiled by `bulkhead check-artifact`; a worker binary
/// must start and answer a probe). The driver runs them before anything is stored;
/// whoever creates the driver says how (the worker executable to run them with).
/// Both are awaited: a check runs a process for up to 10 s, and no thread may be held
/// waiting for it.
public protocol ArtifactProcessChecks: Sendable {
    /// Why `source` cannot be a runtime, or nil.
    func checkRuntime(_ source: String) async -> ControlError?
    /// Why the executable at `path` cannot be a worker binary, or nil.
    func probeBinary(_ path: String) async -> ControlError?
}
