import BulkheadCore

/// The producer's checks of an artifact that need a process of their own (a
/// runtime's Lua syntax is compiled by `bulkhead check-artifact`; a worker binary
/// must start and answer a probe). The driver runs them before anything is stored;
/// whoever creates the driver says how (the worker executable to run them with).
public protocol ArtifactProcessChecks: Sendable {
    /// Why `source` cannot be a runtime, or nil.
    func checkRuntime(_ source: String) -> ControlError?
    /// Why the executable at `path` cannot be a worker binary, or nil.
    func probeBinary(_ path: String) -> ControlError?
}
