import BulkheadCore
import Etcd
import Foundation
import Store

// MARK: - Keys

extension EtcdStore {
    /// The keys of the layout (relative to the prefix), as documented in `EtcdStore.swift`.
    enum Keys {
        static func customer(_ name: String) -> String { "customer/\(name)" }
        static let customers = "customer/"
        static func token(_ hash: String) -> String { "token/\(hash)" }

        static func script(_ customer: String, _ name: String) -> String { "script/\(customer)/\(name)" }
        static func scripts(of customer: String) -> String { "script/\(customer)/" }
        static let allScripts = "script/"
        static func scriptVersion(_ customer: String, _ name: String, _ version: Int) -> String {
            "scriptversion/\(customer)/\(name)/\(padded(version, 10))"
        }
        static func scriptVersions(_ customer: String, _ name: String) -> String { "scriptversion/\(customer)/\(name)/" }
        static func scriptVersions(of customer: String) -> String { "scriptversion/\(customer)/" }
        static let allScriptVersions = "scriptversion/"

        static let blobs = "blob/"
        static func blob(_ sha256: String) -> String { "blob/\(sha256)/" }
        static func blobMeta(_ sha256: String) -> String { "blob/\(sha256)/meta" }
        static func blobChunks(_ sha256: String) -> String { "blob/\(sha256)/c/" }
        static func blobChunk(_ sha256: String, _ index: Int) -> String { "blob/\(sha256)/c/\(padded(index, 5))" }

        static let artifacts = "artifact/"
        static func artifactLatest(_ kind: ArtifactKind) -> String { "artifact/\(kind.rawValue)/latest" }
        static func artifact(_ kind: ArtifactKind, _ version: Int) -> String { "artifact/\(kind.rawValue)/v/\(padded(version, 10))" }
        static func artifactVersions(_ kind: ArtifactKind) -> String { "artifact/\(kind.rawValue)/v/" }

        static let rolloutNext = "rollout/next"
        static func rollout(_ id: Int) -> String { "rollout/r/\(padded(id, 10))" }
        static func rolloutState(_ id: Int) -> String { "rollout/state/\(padded(id, 10))" }
        static func runningRollout(_ kind: ArtifactKind) -> String { "rollout/running/\(kind.rawValue)" }

        static let deploymentNext = "deployment/next"
        static func deployment(_ id: Int) -> String { "deployment/d/\(padded(id, 10))" }
        static func deploymentState(_ id: Int) -> String { "deployment/state/\(padded(id, 10))" }
        static func runningDeployment(_ customer: String, _ name: String) -> String { "deployment/running/\(customer)/\(name)" }
        static let runningDeployments = "deployment/running/"
        static func scriptDeployment(_ customer: String, _ name: String, _ id: Int) -> String {
            "deployment/script/\(customer)/\(name)/\(padded(id, 10))"
        }
        static func scriptDeployments(_ customer: String, _ name: String) -> String { "deployment/script/\(customer)/\(name)/" }
        static func runningDeployments(of customer: String) -> String { "deployment/running/\(customer)/" }
        static func scriptDeployments(of customer: String) -> String { "deployment/script/\(customer)/" }

        static func setting(_ key: String) -> String { "setting/\(key)" }
        static let settings = "setting/"

        static func host(_ name: String) -> String { "host/\(name)" }

        static let auditNext = "audit/next"
        static func auditEvent(_ id: Int) -> String { "audit/e/\(padded(id, 16))" }
        static let auditEvents = "audit/e/"
    }
}

// MARK: - Values

extension EtcdStore {
    /// `audit/next`, `rollout/next`: the number the next one takes.
    struct Counter: Codable {
        var next: Int
    }

    /// `customer/NAME`.
    struct CustomerRecord: Codable {
        var name: String
        var cohort: String
        var tokenHash: String
        var createdAt: Date

        init(_ customer: Customer) {
            name = customer.name
            cohort = customer.cohort
            tokenHash = customer.tokenHash
            createdAt = customer.createdAt
        }

        var customer: Customer { Customer(name: name, cohort: cohort, tokenHash: tokenHash, createdAt: createdAt) }
    }

    /// `token/HASH`.
    struct TokenRecord: Codable {
        var customer: String
    }

    /// `script/CUSTOMER/NAME`: the script's state, with its active version's digest so
    /// that listings need no other key, and the split of its unfinished deployment.
    struct ScriptHead: Codable {
        var activeVersion: Int
        var latestVersion: Int
        var sha256: String
        var size: Int
        var deleted: Bool
        var quarantined: Bool
        var quarantineReason: String?
        var createdAt: Date
        var updatedAt: Date
        /// Set exactly while the script has an unfinished deployment; absent from heads
        /// written before deployments (and from the JSON while nil).
        var split: SplitRecord?

        /// The contents a worker needs: the active version's, and the candidate's while
        /// the split gives it a share.
        var servedHashes: [String] {
            guard let split, split.percent > 0 else { return [sha256] }
            return [sha256, split.sha256]
        }

        /// The split a worker serves: nil while the candidate's share is 0.
        func servedSplit(source: String) -> ScriptSplit? {
            guard let split, split.percent > 0 else { return nil }
            return ScriptSplit(
                deployment: split.deployment, version: split.version, source: source, percent: split.percent,
                keyHeader: split.keyHeader)
        }

        func summary(customer: String, name: String) -> ScriptSummary {
            ScriptSummary(
                customer: customer, name: name, activeVersion: activeVersion, latestVersion: latestVersion, sha256: sha256,
                size: size, quarantined: quarantined, quarantineReason: quarantineReason, createdAt: createdAt,
                updatedAt: updatedAt)
        }
    }

    /// The `split` of a script's head: the deployment, its candidate (by version, and
    /// by content hash so that a read needs no version record), the share and the key.
    struct SplitRecord: Codable, Equatable {
        var deployment: Int
        var version: Int
        var sha256: String
        var percent: Double
        var keyHeader: String?
    }

    /// `scriptversion/CUSTOMER/NAME/N` and `artifact/KIND/v/N`: one version, its
    /// content in `blob/SHA256/`.
    struct VersionRecord: Codable {
        var version: Int
        var sha256: String
        var size: Int
        var createdAt: Date
        var createdBy: String

        func scriptVersion(customer: String, name: String) -> ScriptVersion {
            ScriptVersion(
                customer: customer, name: name, version: version, sha256: sha256, size: size, createdAt: createdAt,
                createdBy: createdBy)
        }

        func artifact(_ kind: ArtifactKind) -> ArtifactSummary {
            ArtifactSummary(kind: kind, version: version, sha256: sha256, size: size, createdAt: createdAt, createdBy: createdBy)
        }
    }

    /// `artifact/KIND/latest`.
    struct LatestRecord: Codable {
        var version: Int
    }

    /// `rollout/r/N`; the state is in `rollout/state/N`.
    struct RolloutRecordValue: Codable {
        var id: Int
        var kind: ArtifactKind
        var version: Int
        var fromVersion: Int
        var status: String
        var finished: Bool
        var createdAt: Date
        var updatedAt: Date
        var createdBy: String

        init(_ record: RolloutRecord) {
            id = record.id
            kind = record.kind
            version = record.version
            fromVersion = record.fromVersion
            status = record.status
            finished = record.finished
            createdAt = record.createdAt
            updatedAt = record.updatedAt
            createdBy = record.createdBy
        }

        func record(state: Data) -> RolloutRecord {
            RolloutRecord(
                id: id, kind: kind, version: version, fromVersion: fromVersion, status: status, finished: finished,
                state: state, createdAt: createdAt, updatedAt: updatedAt, createdBy: createdBy)
        }
    }

    /// An id: `rollout/running/KIND`, `deployment/running/CUSTOMER/NAME` and
    /// `deployment/script/CUSTOMER/NAME/N`.
    struct RunningRecord: Codable {
        var id: Int
    }

    /// `deployment/d/N`; the state is in `deployment/state/N`.
    struct DeploymentRecordValue: Codable {
        var id: Int
        var customer: String
        var name: String
        var version: Int
        var fromVersion: Int
        var keyHeader: String?
        var percent: Double
        var status: String
        var finished: Bool
        var createdAt: Date
        var updatedAt: Date
        var createdBy: String

        init(_ record: DeploymentRecord) {
            id = record.id
            customer = record.customer
            name = record.name
            version = record.version
            fromVersion = record.fromVersion
            keyHeader = record.keyHeader
            percent = record.percent
            status = record.status
            finished = record.finished
            createdAt = record.createdAt
            updatedAt = record.updatedAt
            createdBy = record.createdBy
        }

        func record(state: Data) -> DeploymentRecord {
            DeploymentRecord(
                id: id, customer: customer, name: name, version: version, fromVersion: fromVersion, keyHeader: keyHeader,
                percent: percent, status: status, finished: finished, state: state, createdAt: createdAt,
                updatedAt: updatedAt, createdBy: createdBy)
        }
    }

    /// `setting/KEY`.
    struct SettingRecord: Codable {
        var value: String
        var updatedAt: Date
    }

    /// `audit/e/N` without its detail, which follows it in the same JSON object.
    struct AuditHead: Codable {
        var id: Int
        var at: Date
        var actor: String
        var action: String
        var subject: String
        /// The detail's length in bytes: the detail is the JSON value that ends the
        /// object, kept byte for byte as it was given.
        var detailBytes: Int
    }

    /// An audit event's value: its fields, then `"detail":` and the detail's own JSON
    /// (already checked to be JSON), so that the value is one JSON object whose
    /// detail is not a string holding JSON, and reads back exactly as it was given.
    func encodeAudit(_ event: AuditEvent) throws -> [UInt8] {
        let detail = Array(event.detail.utf8)
        let head = AuditHead(
            id: event.id, at: event.at, actor: event.actor, action: event.action.rawValue, subject: event.subject,
            detailBytes: detail.count)
        var bytes = try encode(head)
        guard bytes.last == UInt8(ascii: "}") else {
            throw StoreError.invalidArgument("internal: an audit event's fields did not encode as an object")
        }
        bytes.removeLast()
        bytes += Array(#","detail":"#.utf8) + detail + [UInt8(ascii: "}")]
        return bytes
    }

    /// An audit event read back (see ``encodeAudit(_:)``).
    func decodeAudit(_ kv: KeyValue) throws -> AuditEvent {
        let head = try decode(AuditHead.self, kv)
        let value = kv.value
        let marker = Array(#""detail":"#.utf8)
        let end = value.count - 1
        let start = end - head.detailBytes
        guard head.detailBytes >= 0, start - marker.count >= 0, value[end] == UInt8(ascii: "}"),
            Array(value[(start - marker.count)..<start]) == marker
        else {
            throw StoreError.remoteUnreadable(
                store: location, key: kv.keyString, detail: "the audit event's detail is not where its length says")
        }
        return AuditEvent(
            id: head.id, at: head.at, actor: head.actor, action: AuditAction(head.action), subject: head.subject,
            detail: String(decoding: value[start..<end], as: UTF8.self))
    }
}
