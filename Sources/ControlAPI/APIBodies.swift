import BulkheadCore
import Control
import Foundation
import Store
import Supervisor

// The JSON bodies of the control API and the host routes. Every one has a schema in
// openapi.yaml; the CLI decodes the same types and prints them as they came for `--json`.

/// A stored script version (`PUT /v1/scripts/{name}`).
public struct UploadAnswer: Codable, Sendable {
    /// The name.
    public var name: String
    /// The version number.
    public var version: Int
    /// SHA-256 of the source, hex.
    public var sha256: String
    /// Size in bytes.
    public var size: Int
    /// When it was stored.
    public var createdAt: Date
    /// Whether the version serves every request now (false: stored with
    /// `live=false`, or under the deployment below).
    public var live: Bool
    /// The gradual deployment the upload started (the cohort's `[deploy]` strategy).
    public var deployment: Int?

    /// Creates the body from the store's record of a version that went live.
    public init(_ version: ScriptVersion) {
        name = version.name
        self.version = version.version
        sha256 = version.sha256
        size = version.size
        createdAt = version.createdAt
        live = true
    }

    enum CodingKeys: String, CodingKey {
        case name, version, sha256, size, live, deployment
        case createdAt = "created_at"
    }
}

/// One script of a customer.
public struct ScriptInfo: Codable, Sendable {
    /// The owner, in the operator's listing of every customer's scripts
    /// (`GET /v1/admin/scripts`); absent where the caller is the customer.
    public var customer: String?
    /// The name.
    public var name: String
    /// The version live on the workers.
    public var activeVersion: Int
    /// The newest stored version.
    public var latestVersion: Int
    /// SHA-256 of the source, hex.
    public var sha256: String
    /// Size in bytes.
    public var size: Int
    /// Whether it is quarantined for killing workers.
    public var quarantined: Bool
    /// When it last changed.
    public var updatedAt: Date

    /// Creates the body from the store's record; `showingCustomer` for the
    /// operator's listing across customers.
    public init(_ summary: ScriptSummary, showingCustomer: Bool = false) {
        customer = showingCustomer ? summary.customer : nil
        name = summary.name
        activeVersion = summary.activeVersion
        latestVersion = summary.latestVersion
        sha256 = summary.sha256
        size = summary.size
        quarantined = summary.quarantined
        updatedAt = summary.updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case customer, name, sha256, size, quarantined
        case activeVersion = "active_version"
        case latestVersion = "latest_version"
        case updatedAt = "updated_at"
    }
}

/// A customer's scripts.
public struct ScriptList: Codable, Sendable {
    /// The scripts, by name.
    public var scripts: [ScriptInfo]
}

/// One script with its active source.
public struct ScriptDetail: Codable, Sendable {
    /// The script.
    public var script: ScriptInfo
    /// The active version's source.
    public var source: String
}

/// One stored version of a script.
public struct VersionInfo: Codable, Sendable {
    /// The version number.
    public var version: Int
    /// SHA-256 of the source, hex.
    public var sha256: String
    /// Size in bytes.
    public var size: Int
    /// When it was stored.
    public var createdAt: Date
    /// Who stored it (`customer:NAME`, `operator`, …).
    public var createdBy: String

    /// Creates the body from the store's record.
    public init(_ version: ScriptVersion) {
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

/// Every stored version of a script.
public struct VersionList: Codable, Sendable {
    /// Oldest first.
    public var versions: [VersionInfo]
}

/// The body of a script rollback: empty, `{}` or `{"version": N}`.
public struct RollbackRequest: Codable, Sendable {
    /// The version number.
    public var version: Int?

    /// Strict: an object with at most `version`, a positive integer; anything else is nil.
    public static func parse(_ data: Data) -> RollbackRequest? {
        guard let object = try? JSONDecoder().decode([String: Int].self, from: data),
              Set(object.keys).isSubset(of: ["version"])
        else { return nil }
        guard let version = object["version"] else { return RollbackRequest(version: nil) }
        return version >= 1 ? RollbackRequest(version: version) : nil
    }

    /// Creates the body.
    public init(version: Int?) {
        self.version = version
    }
}

/// The body of `POST /v1/admin/customers`.
public struct CreateCustomer: Codable, Sendable {
    /// The name.
    public var name: String
    /// The cohort.
    public var cohort: String

    /// Creates the body.
    public init(name: String, cohort: String) {
        self.name = name
        self.cohort = cohort
    }
}

/// A customer just created, or whose token was just replaced, with its new API
/// token (shown once: the store keeps only its hash).
public struct NewCustomer: Codable, Sendable {
    /// The name.
    public var name: String
    /// The cohort.
    public var cohort: String
    /// The customer's API token.
    public var token: String
}

/// One customer.
public struct CustomerInfo: Codable, Sendable {
    /// The name.
    public var name: String
    /// The cohort.
    public var cohort: String
    /// When it was stored.
    public var createdAt: Date

    /// Creates the body from the store's record.
    public init(_ customer: Customer) {
        name = customer.name
        cohort = customer.cohort
        createdAt = customer.createdAt
    }

    enum CodingKeys: String, CodingKey {
        case name, cohort
        case createdAt = "created_at"
    }
}

/// Every customer.
public struct CustomerList: Codable, Sendable {
    /// By name.
    public var customers: [CustomerInfo]
}

/// The body of `POST /v1/admin/rollouts`.
public struct StartRollout: Codable, Sendable {
    /// `runtime`, `rules` or `binary`.
    public var kind: ArtifactKind
    /// The artifact: the runtime's source, the rules JSON, or the binary's absolute path.
    public var content: String

    /// Creates the body.
    public init(kind: ArtifactKind, content: String) {
        self.kind = kind
        self.content = content
    }
}

/// A started rollout's id.
public struct RolloutCreated: Codable, Sendable {
    /// The rollout id.
    public var id: Int
}

/// The last 50 rollouts, newest first.
public struct RolloutList: Codable, Sendable {
    /// Newest first.
    public var rollouts: [RolloutSummary]
}

/// Scripts of every customer, or of one (`GET /v1/admin/scripts?customer=NAME`).
public struct CustomerScriptList: Codable, Sendable {
    /// By customer, then name.
    public var scripts: [ScriptInfo]
}

/// The body of `POST /v1/admin/customers/{name}/move`.
public struct MoveCustomer: Codable, Sendable {
    /// The cohort to move to.
    public var cohort: String

    /// Creates the body.
    public init(cohort: String) {
        self.cohort = cohort
    }
}

// MARK: Host routes (admin.sock)

/// The body of a break-glass change: who asks, for the audit log.
public struct BreakGlassChange: Codable, Sendable {
    /// Who runs the command (`user@host`); `break-glass` when left out.
    public var actor: String?

    /// Creates the body.
    public init(actor: String?) {
        self.actor = actor
    }
}

/// The body of a break-glass rollback, or of its plan.
public struct BreakGlassRollback: Codable, Sendable {
    /// The artifact kind to pin.
    public var kind: ArtifactKind
    /// The version to pin; the newest that completed a rollout when left out.
    public var version: Int?
    /// Whether a version a gate rejected may be pinned.
    public var allowRejected: Bool?
    /// Who runs the command, for the audit log.
    public var actor: String?

    /// Creates the body.
    public init(kind: ArtifactKind, version: Int?, allowRejected: Bool, actor: String?) {
        self.kind = kind
        self.version = version
        self.allowRejected = allowRejected
        self.actor = actor
    }

    enum CodingKeys: String, CodingKey {
        case kind, version, actor
        case allowRejected = "allow_rejected"
    }
}

/// The body of a break-glass unpin.
public struct BreakGlassUnpin: Codable, Sendable {
    /// The artifact kind to release.
    public var kind: ArtifactKind
    /// Who runs the command, for the audit log.
    public var actor: String?

    /// Creates the body.
    public init(kind: ArtifactKind, actor: String?) {
        self.kind = kind
        self.actor = actor
    }
}

/// The body of `POST /v1/host/pools/{name}/scale`.
public struct ScalePool: Codable, Sendable {
    /// Workers, 0 to 64 (0 drains the pool).
    public var workers: Int

    /// Creates the body.
    public init(workers: Int) {
        self.workers = workers
    }
}
