/// The limits one call into a script runs under: loading it, and every request.
///
/// They come from the cohort (`[limits]` in its file). A zero turns a limit off.
public struct SandboxLimits: Sendable, Equatable {
    /// Lua VM instructions per call, shared by every coroutine of the call. Counted
    /// by a hook every ~1000 instructions; 0 = no hook at all (no instruction
    /// limit, and no wall-clock check inside Lua: only a watchdog then sees time).
    public var instructions: Int
    /// Cap on the bytes the script's state may hold, for the whole life of the
    /// state (not per call); 0 = no cap.
    public var memoryBytes: Int
    /// Wall-clock deadline per call in milliseconds, checked by the hook and, with a
    /// margin, by the ``Watchdog``; 0 = none.
    public var wallMilliseconds: Int

    /// Limits with every field given.
    public init(instructions: Int, memoryBytes: Int, wallMilliseconds: Int) {
        self.instructions = instructions
        self.memoryBytes = memoryBytes
        self.wallMilliseconds = wallMilliseconds
    }

    /// No limit at all, and no instruction hook (for measuring the hook's cost).
    public static let unlimited = SandboxLimits(instructions: 0, memoryBytes: 0, wallMilliseconds: 0)
}
