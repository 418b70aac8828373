import BulkheadCore
import Foundation

/// The argument checks every backend makes before it touches its storage, so that
/// SQLite and etcd refuse the same input with the same ``StoreError``.
package enum StoreArguments {
    /// A customer, script, cohort or pool name (`ResourceName`).
    package static func checkName(_ what: String, _ value: String) throws {
        guard ResourceName.isValid(value) else { throw StoreError.invalidName(what, value) }
    }

    /// Who made a change, as the audit log shows it.
    package static func checkActor(_ actor: String) throws {
        guard !actor.isEmpty, actor.utf8.count <= 200, !actor.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw StoreError.invalidArgument(
                "the actor of a change must be 1 to 200 characters without control characters, got \(actor.debugDescription)")
        }
    }

    /// Refuses a script or artifact larger than the store takes, before any hashing.
    package static func checkContentSize(_ what: String, _ content: String, maximum: Int) throws {
        let size = content.utf8.count
        guard size <= maximum else {
            throw StoreError.invalidArgument("\(what) is \(size) bytes, more than the \(maximum) bytes the store accepts")
        }
    }

    /// A quarantine reason: at most 2000 bytes.
    package static func checkQuarantineReason(_ reason: String?) throws {
        if let reason, reason.utf8.count > 2000 {
            throw StoreError.invalidArgument("a quarantine reason is at most 2000 bytes, got \(reason.utf8.count)")
        }
    }

    /// A rollout's status word: 1 to 64 bytes.
    package static func checkRolloutStatus(_ status: String) throws {
        guard !status.isEmpty, status.utf8.count <= 64 else {
            throw StoreError.invalidArgument("a rollout status is 1 to 64 bytes, got \(status.debugDescription)")
        }
    }

    /// A rollout's from-version: 0 (built in) or more.
    package static func checkFromVersion(_ fromVersion: Int) throws {
        guard fromVersion >= 0 else {
            throw StoreError.invalidArgument("a rollout's from-version is 0 (built in) or more, got \(fromVersion)")
        }
    }

    /// A rollout listing's limit: 1 or more.
    package static func checkRolloutLimit(_ limit: Int) throws {
        guard limit >= 1 else { throw StoreError.invalidArgument("a rollout listing needs a limit of 1 or more, got \(limit)") }
    }

    /// A deployment's status word: 1 to 64 bytes.
    package static func checkDeploymentStatus(_ status: String) throws {
        guard !status.isEmpty, status.utf8.count <= 64 else {
            throw StoreError.invalidArgument("a deployment status is 1 to 64 bytes, got \(status.debugDescription)")
        }
    }

    /// A candidate's share of requests: a percentage from 0 to 100.
    package static func checkDeploymentPercent(_ percent: Double) throws {
        guard percent.isFinite, (0...100).contains(percent) else {
            throw StoreError.invalidArgument("a deployment's share is a percentage from 0 to 100, got \(percent)")
        }
    }

    /// The header whose value keys a split: an HTTP field name in lower case, 1 to 128 bytes.
    package static func checkKeyHeader(_ header: String?) throws {
        guard let header else { return }
        let bytes = header.utf8
        let allowed = bytes.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
        guard !bytes.isEmpty, bytes.count <= 128, allowed else {
            throw StoreError.invalidArgument(
                "invalid key header \(header.debugDescription): use an HTTP header name in lower case (a-z, 0-9, "
                    + "!#$%&'*+-.^_`|~), 1 to 128 characters, or none to key the split by the client's address")
        }
    }

    /// A deployment listing's limit: 1 or more.
    package static func checkDeploymentLimit(_ limit: Int) throws {
        guard limit >= 1 else {
            throw StoreError.invalidArgument("a deployment listing needs a limit of 1 or more, got \(limit)")
        }
    }

    /// An audit event appended from outside the store: its action, subject and JSON detail.
    package static func checkAuditEvent(action: AuditAction, subject: String, detail: String) throws {
        guard !action.rawValue.isEmpty, action.rawValue.utf8.count <= 64 else {
            throw StoreError.invalidArgument("an audit action is 1 to 64 bytes, got \(action.rawValue.debugDescription)")
        }
        guard !subject.isEmpty, subject.utf8.count <= 256 else {
            throw StoreError.invalidArgument("an audit subject is 1 to 256 bytes, got \(subject.utf8.count)")
        }
        guard (try? JSONSerialization.jsonObject(with: Data(detail.utf8), options: [.fragmentsAllowed])) != nil else {
            throw StoreError.invalidArgument("an audit event's detail must be JSON, got \(detail.prefix(80).debugDescription)")
        }
    }

    /// An audit listing's limit: 1 to 10000.
    package static func checkAuditLimit(_ limit: Int) throws {
        guard (1...10_000).contains(limit) else {
            throw StoreError.invalidArgument("an audit listing's limit is 1 to 10000, got \(limit)")
        }
    }

    /// A setting's value: at most 64 KiB.
    package static func checkSettingValue(_ key: String, _ value: String?) throws {
        if let value, value.utf8.count > 64 * 1024 {
            throw StoreError.invalidArgument("a setting's value is at most 64 KiB, got \(value.utf8.count) bytes for \(key)")
        }
    }

    /// A setting key: `[a-z0-9][a-z0-9._-]*`, at most 128 characters.
    package static func checkSettingKey(_ key: String) throws {
        let bytes = key.utf8
        let allowed = bytes.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        guard let first = bytes.first, bytes.count <= 128, allowed, first != UInt8(ascii: "."),
            first != UInt8(ascii: "_"), first != UInt8(ascii: "-")
        else {
            throw StoreError.invalidArgument(
                "invalid setting key \(key.debugDescription): use 1 to 128 characters of a-z, 0-9, '.', '_' and '-', "
                    + "starting with a letter or digit")
        }
    }
}
