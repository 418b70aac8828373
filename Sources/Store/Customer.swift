import Foundation

/// A customer: its name, the cohort (pool) it belongs to and the hash of its API token.
///
/// Not `Codable` on purpose: the token hash must not leak into API responses or logs
/// through a convenient `JSONEncoder().encode(customer)`; the API builds its own shape.
public struct Customer: Sendable, Equatable {
    /// The customer's name (`ResourceName` rule), unique.
    public var name: String
    /// The cohort, and so the pool, the customer's scripts run in.
    public var cohort: String
    /// SHA-256 hex of the customer's API token (see ``TokenHash``); never the token.
    public var tokenHash: String
    /// When the customer was added.
    public var createdAt: Date

    /// Creates a customer value.
    public init(name: String, cohort: String, tokenHash: String, createdAt: Date) {
        self.name = name
        self.cohort = cohort
        self.tokenHash = tokenHash
        self.createdAt = createdAt
    }
}
