import CLuaSandbox

/// Why a script failed, with the names the data plane reports (`x-bulkhead-error`).
public enum ScriptErrorKind: String, Sendable {
    /// The script raised an error, returned a bad response, or lacks `handle`.
    case scriptError = "script-error"
    /// The instruction budget of the call was spent.
    case limitCPU = "limit-cpu"
    /// The state's memory cap refused an allocation.
    case limitMemory = "limit-memory"
    /// The call's wall-clock deadline passed.
    case limitWall = "limit-wall"
    /// The script does not compile (or is not text).
    case syntax = "syntax"
}

/// A script's failure: its kind and a message naming the chunk and, where there is
/// one, the line (`hello.lua:3: attempt to index a nil value (field 'x')`).
public struct ScriptError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public var kind: ScriptErrorKind
    /// The message, prefixed with the chunk name (and line, where Lua knows it).
    public var message: String

    /// An error of `kind` with `message`.
    public init(kind: ScriptErrorKind, message: String) {
        self.kind = kind
        self.message = message
    }

    /// `kind: message`, e.g. `limit-cpu: hello.lua:2: instruction limit exceeded`.
    public var description: String { "\(kind.rawValue): \(message)" }
}

extension ScriptErrorKind {
    /// The kind of a failed call's outcome (never called with `BH_OK`).
    init(_ outcome: bh_outcome) {
        switch outcome {
        case BH_LIMIT_CPU: self = .limitCPU
        case BH_LIMIT_MEMORY: self = .limitMemory
        case BH_LIMIT_WALL: self = .limitWall
        case BH_SYNTAX: self = .syntax
        default: self = .scriptError
        }
    }
}
