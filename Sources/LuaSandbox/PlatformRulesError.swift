/// Why a rules artifact was not loaded into a ``PlatformRuntime``. The runtime keeps
/// the rules it had (last known good); the worker reports the failure as a platform
/// error ("an artifact that fails to load").
public struct PlatformRulesError: Error, Sendable, CustomStringConvertible {
    /// What failed, starting with `rules: `: `rules: json.decode: expected ',' or '}'
    /// at byte 17`, `rules: the top level must be a JSON object, got an array`, a
    /// validator's refusal (`rules: 400 rules, more than the limit of 200`), or a
    /// limit of the runtime's state (`rules: runtime.lua: memory limit of 16777216
    /// bytes exceeded`).
    public var message: String

    /// An error with `message`.
    public init(message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
