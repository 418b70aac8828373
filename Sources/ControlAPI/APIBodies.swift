import BulkheadCore
import Foundation
import Store
import Supervisor

// The JSON bodies of the control API. Every one has a schema in openapi.yaml.

struct ErrorBody: Codable {
    var error: String
    var message: String
}

struct Health: Codable {
    var status: String
    var pools: Int
}

struct UploadAnswer: Codable {
    var name: String
    var version: Int
    var sha256: String
    var size: Int
    var createdAt: Date

    init(_ version: ScriptVersion) {
        name = version.name
        self.version = version.version
        sha256 = version.sha256
        size = version.size
        createdAt = version.createdAt
    }

    enum CodingKeys: String, CodingKey {
        case name, version, sha256, size
        case createdAt = "created_at"
    }
}

struct ScriptInfo: Codable {
    var name: String
    var activeVersion: Int
    var latestVersion: Int
    var sha256: String
    var size: Int
    var quarantined: Bool
    var updatedAt: Date

    init(_ summary: ScriptSummary) {
        name = summary.name
        activeVersion = summary.activeVersion
        latestVersion = summary.latestVersion
        sha256 = summary.sha256
        size = summary.size
        quarantined = summary.quarantined
        updatedAt = summary.updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case name, sha256, size, quarantined
        case activeVersion = "active_version"
        case latestVersion = "latest_version"
        case updatedAt = "updated_at"
    }
}

struct ScriptList: Codable {
    var scripts: [ScriptInfo]
}

struct ScriptDetail: Codable {
    var script: ScriptInfo
    var source: String
}

struct VersionInfo: Codable {
    var version: Int
    var sha256: String
    var size: Int
    var createdAt: Date
    var createdBy: String

    init(_ version: ScriptVersion) {
        self.version = version.version
        sha256 = version.sha256
        size = version.size
        createdAt = version.createdAt
        createdBy = version.createdBy
    }

    enum CodingKeys: String, CodingKey {
        case version, sha256, size
        case createdAt = "created_at"
        case createdBy = "created_by"
    }
}

struct VersionList: Codable {
    var versions: [VersionInfo]
}

struct LogLines: Codable {
    var lines: [String]
}

struct RollbackRequest: Codable {
    var version: Int?

    /// Strict: an object with at most `version`, a positive integer; anything else is nil.
    static func parse(_ data: Data) -> RollbackRequest? {
        guard let object = try? JSONDecoder().decode([String: Int].self, from: data),
              Set(object.keys).isSubset(of: ["version"])
        else { return nil }
        guard let version = object["version"] else { return RollbackRequest(version: nil) }
        return version >= 1 ? RollbackRequest(version: version) : nil
    }
}

struct CreateCustomer: Codable {
    var name: String
    var cohort: String
}

struct NewCustomer: Codable {
    var name: String
    var cohort: String
    var token: String
}

struct CustomerInfo: Codable {
    var name: String
    var cohort: String
    var createdAt: Date

    init(_ customer: Customer) {
        name = customer.name
        cohort = customer.cohort
        createdAt = customer.createdAt
    }

    enum CodingKeys: String, CodingKey {
        case name, cohort
        case createdAt = "created_at"
    }
}

struct CustomerList: Codable {
    var customers: [CustomerInfo]
}

struct Released: Codable {
    var released: String
}

struct StartRollout: Codable {
    var kind: String
    var content: String
}

struct RolloutCreated: Codable {
    var id: Int
}

struct RolloutList: Codable {
    var rollouts: [RolloutSummary]
}
