import Foundation

/// The JSON object the store writes as the detail of its own audit events.
///
/// Typed values rather than `[String: Any]` so that versions stay numbers and the
/// encoding cannot meet a value it does not know.
package struct AuditDetail: Encodable, ExpressibleByDictionaryLiteral {
    /// One field's value.
    package enum Value: Encodable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
        case string(String)
        case int(Int)
        case double(Double)
        case bool(Bool)
        case null

        package init(stringLiteral value: String) { self = .string(value) }
        package init(integerLiteral value: Int) { self = .int(value) }
        package init(booleanLiteral value: Bool) { self = .bool(value) }

        /// `.int`, or `.null` for nil.
        package static func optional(_ value: Int?) -> Value { value.map(Value.int) ?? .null }
        /// `.string`, or `.null` for nil.
        package static func optional(_ value: String?) -> Value { value.map(Value.string) ?? .null }

        package func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let value): try container.encode(value)
            case .int(let value): try container.encode(value)
            case .double(let value): try container.encode(value)
            case .bool(let value): try container.encode(value)
            case .null: try container.encodeNil()
            }
        }
    }

    private var fields: [String: Value]

    package init(_ fields: [String: Value]) {
        self.fields = fields
    }

    package init(dictionaryLiteral elements: (String, Value)...) {
        fields = Dictionary(elements, uniquingKeysWith: { _, last in last })
    }

    package func encode(to encoder: any Encoder) throws {
        try fields.encode(to: encoder)
    }

    /// These fields and `other`'s; `other` wins on a shared key.
    package func merging(_ other: AuditDetail) -> AuditDetail {
        var merged = self
        merged.fields.merge(other.fields, uniquingKeysWith: { _, new in new })
        return merged
    }

    /// The compact JSON text, keys sorted so equal details read the same.
    package func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(fields), as: UTF8.self)
    }
}

extension AuditDetail {
    /// The detail of `customer.remove`, as both stores write it. A detail holds no
    /// lists, so the scripts removed and the deployments ended (aborted) are
    /// comma-separated.
    package static func customerRemoval(cohort: String, scripts: [String], aborted: [Int]) -> AuditDetail {
        [
            "cohort": .string(cohort), "scripts": .string(scripts.joined(separator: ",")),
            "aborted_deployments": .string(aborted.map(String.init).joined(separator: ",")),
        ]
    }
}
