import CLuaSandbox

/// The limits one call into a script runs under: loading it, and every request.
///
/// They come from the cohort (`[limits]` in its file). A zero turns a limit off.
public struct SandboxLimits: Sendable, Equatable {
    /// Lua VM instructions per call, shared by every coroutine of the call. Counted
    /// by a hook every ~1000 instructions; 0 = no hook at all (no instruction
    /// limit, and no wall-clock check inside Lua: only a watchdog then sees time).
    /// A budget of ``lazyCountingThreshold`` or more is counted lazily: see
    /// ``lazyInstructionCounting``.
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

    /// Budgets from this many instructions up are counted lazily.
    public static let lazyCountingThreshold = Int(BH_LAZY_MIN_BUDGET)

    /// The most a lazily counted call can be stopped early by, in instructions.
    public static let lazyCountingTolerance = Int(BH_LAZY_CHARGE)

    /// Turns off (0) or sets the sandbox's guard on nested `coroutine.close`,
    /// which keeps Lua 5.4.4's bug from overflowing the C stack. Only fault
    /// injection turns it off (`BULKHEAD_FAULT_NESTED_CLOSES`), to test how a
    /// worker crash is blamed on the script that caused it.
    public static func setNestedCloseLimit(_ limit: Int) {
        _ = bh_set_nested_close_limit(Int32(clamping: limit))
    }

    /// Whether large budgets are counted lazily: such a call runs with no hook
    /// until a 500 µs timer tick lands in it, is charged
    /// ``lazyCountingTolerance`` instructions for that time (more than it can have
    /// run), and is counted exactly from there on. Nearly every call ends before a
    /// tick and pays nothing per instruction; the count hook costs about 12% of a
    /// busy handler. On by default; `BULKHEAD_COUNT_HOOK=1` in the environment
    /// turns it off for the process. Applies to calls that begin afterwards.
    public static var lazyInstructionCounting: Bool {
        get { bh_lazy_hook() != 0 }
        set { _ = bh_set_lazy_hook(newValue ? 1 : 0) }
    }
}
