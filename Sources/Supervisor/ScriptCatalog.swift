import BulkheadCore
import Foundation

/// The customers, their cohorts and their active scripts, as the supervisor ships
/// them to workers.
///
/// A projection of the store, rebuilt after every change; what changed between two
/// catalogs is what the workers are sent.
public struct ScriptCatalog: Sendable, Equatable {
    /// Customer → cohort.
    public private(set) var assignments: [String: String] = [:]
    /// Customer → script name → active script.
    public private(set) var scripts: [String: [String: ScriptSpec]] = [:]

    /// An empty catalog.
    public init() {}

    /// Assigns a customer to a cohort.
    public mutating func assign(customer: String, to cohort: String) {
        assignments[customer] = cohort
    }

    /// Sets a script's active version.
    public mutating func put(_ spec: ScriptSpec) {
        scripts[spec.customer, default: [:]][spec.name] = spec
    }

    /// Drops a script (deleted).
    public mutating func remove(customer: String, name: String) {
        scripts[customer]?[name] = nil
        if scripts[customer]?.isEmpty == true { scripts[customer] = nil }
    }

    /// Drops a customer (removed) with every script of theirs.
    public mutating func remove(customer: String) {
        assignments[customer] = nil
        scripts[customer] = nil
    }

    /// Every script of the customers assigned to `cohort`.
    public func scripts(forCohort cohort: String) -> [ScriptSpec] {
        assignments.filter { $0.value == cohort }.keys.sorted().flatMap { customer in
            (scripts[customer] ?? [:]).values.sorted { $0.name < $1.name }
        }
    }

    /// The catalog the store describes: every customer's cohort, every active script.
    public static func from(customers: [(name: String, cohort: String)], active: [ScriptSpec]) -> ScriptCatalog {
        var catalog = ScriptCatalog()
        for customer in customers { catalog.assignments[customer.name] = customer.cohort }
        for spec in active { catalog.put(spec) }
        return catalog
    }
}
