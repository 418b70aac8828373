/// Why a rules artifact was refused by ``RulesValidator``.
///
/// The message names what failed and where, and for a limit the limit itself:
/// `rules: 400 rules, more than the limit of 200`,
/// `rule "r7": action "frobnicate" is not one of block, log, skip, execute`,
/// `rulesets a → b → a execute each other in a loop`.
public struct RulesError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of refusal, for counting and tests; the message says the rest.
    public enum Kind: String, Sendable, Equatable {
        /// The file is larger than ``RulesValidator/maximumBytes``.
        case tooLarge = "too-large"
        /// The file is not strict JSON (RFC 8259: no trailing commas, no byte order
        /// mark, no key twice in one object).
        case notJSON = "not-json"
        /// A key, a type or a value does not fit the schema.
        case schema
        /// More rules in all than ``RulesValidator/maximumRules``.
        case tooManyRules = "too-many-rules"
        /// More rulesets than ``RulesValidator/maximumRulesets``.
        case tooManyRulesets = "too-many-rulesets"
        /// Two rules share an id.
        case duplicateID = "duplicate-id"
        /// An `execute` rule names a ruleset that is not defined.
        case unknownRuleset = "unknown-ruleset"
        /// Rulesets execute each other in a loop.
        case cycle
        /// `execute` nests deeper than ``RulesValidator/maximumDepth``.
        case tooDeep = "too-deep"
    }

    /// The kind of refusal.
    public var kind: Kind
    /// What failed, for a person: see the type's documentation.
    public var message: String

    /// A refusal of `kind` with `message`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
