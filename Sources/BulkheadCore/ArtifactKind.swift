/// The three kinds of platform artifact; each has its own version sequence from 1.
public enum ArtifactKind: String, Codable, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    /// One Lua file run before every customer script; its content is the Lua source.
    case runtime
    /// The rules JSON the runtime evaluates; its content is the JSON text.
    case rules
    /// A worker executable; its content is the binary's path.
    case binary

    /// The kind's name as the CLI and API spell it.
    public var description: String { rawValue }
}
