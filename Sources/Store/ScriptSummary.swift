import Foundation

/// A customer's script as listings show it: its active version and state.
public struct ScriptSummary: Codable, Sendable, Equatable {
    /// The customer that owns the script.
    public var customer: String
    /// The script's name.
    public var name: String
    /// The version that serves requests.
    public var activeVersion: Int
    /// The highest version stored (above ``activeVersion`` after a rollback).
    public var latestVersion: Int
    /// SHA-256 hex of the active version's source.
    public var sha256: String
    /// Size in bytes of the active version's source.
    public var size: Int
    /// Whether the script is quarantined for killing workers.
    public var quarantined: Bool
    /// Why it was quarantined, when it is and a reason was given.
    public var quarantineReason: String?
    /// When the script was first uploaded.
    public var createdAt: Date
    /// When the script last changed: an upload, a rollback, a quarantine.
    public var updatedAt: Date

    /// Creates a summary value.
    public init(
        customer: String, name: String, activeVersion: Int, latestVersion: Int, sha256: String, size: Int,
        quarantined: Bool, quarantineReason: String?, createdAt: Date, updatedAt: Date
    ) {
        self.customer = customer
        self.name = name
        self.activeVersion = activeVersion
        self.latestVersion = latestVersion
        self.sha256 = sha256
        self.size = size
        self.quarantined = quarantined
        self.quarantineReason = quarantineReason
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}
