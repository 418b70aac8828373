import Foundation

/// One stored version of a customer's script, without its source.
public struct ScriptVersion: Codable, Sendable, Equatable {
    /// The customer that owns the script.
    public var customer: String
    /// The script's name.
    public var name: String
    /// The version, counting from 1 per script; a deleted and re-uploaded script continues the count.
    public var version: Int
    /// SHA-256 hex of the source's UTF-8 bytes.
    public var sha256: String
    /// Size of the source in bytes (UTF-8).
    public var size: Int
    /// When the version was uploaded.
    public var createdAt: Date
    /// Who uploaded it (an audit actor such as `customer:acme`).
    public var createdBy: String

    /// Creates a version value.
    public init(customer: String, name: String, version: Int, sha256: String, size: Int, createdAt: Date, createdBy: String) {
        self.customer = customer
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.createdAt = createdAt
        self.createdBy = createdBy
    }
}

/// One version of a script with its source text.
public struct ScriptSource: Codable, Sendable, Equatable {
    /// Which version this is.
    public var version: ScriptVersion
    /// The Lua source text.
    public var source: String

    /// Creates a value.
    public init(version: ScriptVersion, source: String) {
        self.version = version
        self.source = source
    }
}
