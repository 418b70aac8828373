import BulkheadCore
import Foundation

/// The last cohort configuration a pool ran well with, used when its file turns bad.
public struct KnownGoodCohort: Sendable, Equatable {
    /// The configuration; its `name` is the pool name.
    public var configuration: CohortConfiguration
    /// When it was saved (when it last changed).
    public var savedAt: Date

    /// Creates a value.
    public init(configuration: CohortConfiguration, savedAt: Date) {
        self.configuration = configuration
        self.savedAt = savedAt
    }
}
