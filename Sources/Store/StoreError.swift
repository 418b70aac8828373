import BulkheadCore
import Foundation

/// Why the store refused or failed an operation, in words a person can act on.
///
/// A struct around a private enum, not a public enum: the reasons will grow with new
/// backends and features without breaking callers. Choose a reaction (an HTTP status, an exit
/// code) from ``kind``; show ``description`` to the person.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// Broad classes of failure that callers react to differently.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case invalid, notFound, conflict, diskFull, damaged, incompatible, unavailable, unreachable
        }

        private let value: Value

        /// An argument broke a rule (a name, a hash, a JSON text, a limit): fix the input (HTTP 400).
        public static let invalid = Kind(value: .invalid)
        /// The customer, script, version, artifact, rollout or deployment does not exist (HTTP 404).
        public static let notFound = Kind(value: .notFound)
        /// The change clashes with what is stored: a duplicate, a rollout or deployment in progress (HTTP 409).
        public static let conflict = Kind(value: .conflict)
        /// The disk holding the store, or the store's size cap, is full; nothing was written (HTTP 507).
        public static let diskFull = Kind(value: .diskFull)
        /// The database file is not a bulkhead store, is truncated or corrupt: restore or move it.
        public static let damaged = Kind(value: .damaged)
        /// The database was written by a newer bulkhead whose schema this build does not know.
        public static let incompatible = Kind(value: .incompatible)
        /// The store cannot be used right now: locked by another process, an I/O or permission error (HTTP 503).
        public static let unavailable = Kind(value: .unavailable)
        /// The control store's servers cannot be reached, or have no quorum (etcd): the
        /// change may not have been made; retry when they are back (HTTP 503,
        /// `control-plane-unavailable`).
        public static let unreachable = Kind(value: .unreachable)

        /// The kind's name, e.g. `not-found`.
        public var description: String {
            switch value {
            case .invalid: "invalid"
            case .notFound: "not-found"
            case .conflict: "conflict"
            case .diskFull: "disk-full"
            case .damaged: "damaged"
            case .incompatible: "incompatible"
            case .unavailable: "unavailable"
            case .unreachable: "unreachable"
            }
        }
    }

    private enum Reason: Sendable {
        case invalidName(what: String, value: String)
        case invalidArgument(String)
        case customerExists(String)
        case tokenHashInUse
        case customerNotFound(String)
        case scriptNotFound(customer: String, name: String)
        case scriptVersionNotFound(customer: String, name: String, version: Int, latest: Int)
        case noEarlierVersion(customer: String, name: String, active: Int)
        case artifactNotFound(kind: String, version: Int)
        case rolloutNotFound(Int)
        case rolloutInProgress(kind: String, id: Int)
        case rolloutFinished(Int)
        case deploymentNotFound(Int)
        case deploymentInProgress(customer: String, name: String, id: Int)
        case deploymentOfActiveVersion(customer: String, name: String, version: Int)
        case deploymentFinished(Int)
        case missingStore(path: String)
        case orphanedLog(path: String)
        case damagedLog(path: String, detail: String)
        case notSQLite(path: String)
        case notBulkhead(path: String, applicationID: Int32)
        case truncated(path: String, detail: String)
        case corrupt(path: String, detail: String)
        case newerSchema(path: String, unknownMigrations: [String])
        case diskFull(path: String, operation: String)
        case busy(path: String, operation: String, message: String)
        case database(path: String, operation: String, code: Int32, message: String, damaged: Bool)
        case unreadable(path: String, what: String, detail: String)
        case cannotOpen(path: String, detail: String)
        case unreadableSetting(key: String, value: String, expected: String)
        case remoteUnreachable(store: String, operation: String, detail: String)
        case remoteFailed(store: String, operation: String, detail: String)
        case remoteUnreadable(store: String, key: String, detail: String)
        case contended(store: String, operation: String, attempts: Int)
        case fenced(store: String, operation: String)
    }

    private let reason: Reason

    private init(_ reason: Reason) {
        self.reason = reason
    }

    /// The class of failure, to choose a reaction.
    public var kind: Kind {
        switch reason {
        case .invalidName, .invalidArgument: .invalid
        case .customerNotFound, .scriptNotFound, .scriptVersionNotFound, .artifactNotFound, .rolloutNotFound,
            .deploymentNotFound, .missingStore:
            .notFound
        case .customerExists, .tokenHashInUse, .noEarlierVersion, .rolloutInProgress, .rolloutFinished,
            .deploymentInProgress, .deploymentOfActiveVersion, .deploymentFinished:
            .conflict
        case .diskFull: .diskFull
        case .orphanedLog, .damagedLog, .notSQLite, .notBulkhead, .truncated, .corrupt, .unreadable, .unreadableSetting,
            .remoteUnreadable:
            .damaged
        case .newerSchema: .incompatible
        case .busy, .cannotOpen, .remoteFailed, .contended, .fenced: .unavailable
        case .remoteUnreachable: .unreachable
        case .database(_, _, _, _, let damaged): damaged ? .damaged : .unavailable
        }
    }

    /// What failed, where, and what to do about it.
    public var description: String {
        switch reason {
        case .invalidName(let what, let value):
            return "invalid \(what) name \(quoted(value)): use \(ResourceName.rule)"
        case .invalidArgument(let message):
            return message
        case .customerExists(let name):
            return "customer \(quoted(name)) already exists; pick another name"
        case .tokenHashInUse:
            return "another customer already has this API token; generate a new token"
        case .customerNotFound(let name):
            return "no customer named \(quoted(name))"
        case .scriptNotFound(let customer, let name):
            return "customer \(quoted(customer)) has no script named \(quoted(name))"
        case .scriptVersionNotFound(let customer, let name, let version, let latest):
            return "script \(customer)/\(name) has no version \(version) (it has versions 1 to \(latest))"
        case .noEarlierVersion(let customer, let name, let active):
            return "script \(customer)/\(name) is at version \(active): there is no earlier version to roll back to"
        case .artifactNotFound(let kind, let version):
            return "there is no \(kind) artifact version \(version)"
        case .rolloutNotFound(let id):
            return "there is no rollout \(id)"
        case .rolloutInProgress(let kind, let id):
            return "rollout \(id) of the \(kind) artifact is still in progress; "
                + "wait for it to finish, or abort it, before starting another"
        case .rolloutFinished(let id):
            return "rollout \(id) has finished and cannot be reopened; start a new rollout"
        case .deploymentNotFound(let id):
            return "there is no script deployment \(id)"
        case .deploymentInProgress(let customer, let name, let id):
            return "deployment \(id) of script \(customer)/\(name) is still in progress; wait for it to finish, or "
                + "abort it, before a live upload or another deployment (an upload with live=false is taken meanwhile)"
        case .deploymentOfActiveVersion(let customer, let name, let version):
            return "version \(version) of script \(customer)/\(name) is already active: deploy another version "
                + "(upload it with live=false first)"
        case .deploymentFinished(let id):
            return "deployment \(id) has finished and cannot be changed; start a new deployment"
        case .missingStore(let path):
            return "there is no bulkhead store at \(path) (nothing was created there). Check --data: it names the "
                + "directory `bulkhead serve` was started with (default ./.bulkhead)"
        case .orphanedLog(let path):
            return "\(path) is missing but its write-ahead log \(path)-wal is there: the database was moved or "
                + "deleted while in use. Restore \(path), or remove \(path)-wal and \(path)-shm to start an empty store"
        case .damagedLog(let path, let detail):
            return "\(path)-wal, the write-ahead log of \(path), is damaged: \(detail). It may hold the newest "
                + "changes, so bulkhead will not start without it. Restore \(path) and \(path)-wal together from a "
                + "backup; or, to accept losing what the log held, move \(path)-wal and \(path)-shm away"
        case .notSQLite(let path):
            return "\(path) is not an SQLite database (its header is not \"SQLite format 3\"). "
                + "Refusing to use it as the bulkhead store: move it away, or give another --data directory"
        case .notBulkhead(let path, let applicationID):
            return "\(path) is an SQLite database but not a bulkhead store (application_id \(hex(applicationID))). "
                + "Refusing to use it: move it away, or give another --data directory"
        case .truncated(let path, let detail):
            return "\(path) is truncated: \(detail). Restore it from a backup, or move it away to start an "
                + "empty store; bulkhead will not start empty over it"
        case .corrupt(let path, let detail):
            return "\(path) is corrupt: \(detail). Restore it from a backup, or move it away to start an "
                + "empty store; bulkhead will not start empty over it"
        case .newerSchema(let path, let unknownMigrations):
            return "\(path) was written by a newer bulkhead (schema migrations this build does not know: "
                + "\(unknownMigrations.joined(separator: ", "))). Run that newer build, or restore a backup made for this one"
        case .diskFull(let path, let operation):
            return "disk full: could not \(operation): the disk holding \(path) (or the store's size limit) "
                + "is full (SQLITE_FULL). Nothing was written; free some space and retry"
        case .busy(let path, let operation, let message):
            return "could not \(operation): \(path) is locked by another process (\(message)); "
                + "retry, or stop the other bulkhead process using it"
        case .database(let path, let operation, let code, let message, _):
            // A negative code marks an error that did not come from SQLite.
            let origin = code >= 0 ? " (SQLite error \(code))" : ""
            return "could not \(operation) in \(path): \(message)\(origin)"
        case .unreadable(let path, let what, let detail):
            return "\(path) holds \(what) that cannot be read (\(detail)); the store may be damaged: "
                + "check it with `sqlite3 \(path) 'PRAGMA integrity_check'`"
        case .cannotOpen(let path, let detail):
            return "could not open the store \(path): \(detail)"
        case .unreadableSetting(let key, let value, let expected):
            return "setting \(key) holds \(quoted(value)) where \(expected) was expected; set it again to repair it"
        case .remoteUnreachable(let store, let operation, let detail):
            return "the control store is unreachable: could not \(operation): \(store) did not answer (\(detail)). "
                + "Nothing was changed unless the message says a write may have been applied; retry when etcd is back"
        case .remoteFailed(let store, let operation, let detail):
            return "could not \(operation) in \(store): \(detail)"
        case .remoteUnreadable(let store, let key, let detail):
            return "\(store) holds a value at \(key) that cannot be read (\(detail)); the store may be damaged: "
                + "check it with `etcdctl get \(key)`"
        case .contended(let store, let operation, let attempts):
            return "could not \(operation): in each of \(attempts) attempts, another writer changed what it read in "
                + "\(store) before it could commit (other control processes writing at once); nothing was changed, retry"
        case .fenced(let store, let operation):
            return "could not \(operation): this control process no longer leads the rollout driver in \(store) "
                + "(its lease was lost, and another may lead now); nothing was changed"
        }
    }

    private func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    private func hex(_ value: Int32) -> String {
        "0x" + String(UInt32(bitPattern: value), radix: 16)
    }
}

// MARK: - Makers used by the backends (SQLite here, etcd in its own module)

extension StoreError {
    package static func invalidName(_ what: String, _ value: String) -> StoreError { StoreError(.invalidName(what: what, value: value)) }
    package static func invalidArgument(_ message: String) -> StoreError { StoreError(.invalidArgument(message)) }
    package static func customerExists(_ name: String) -> StoreError { StoreError(.customerExists(name)) }
    package static let tokenHashInUse = StoreError(.tokenHashInUse)
    package static func customerNotFound(_ name: String) -> StoreError { StoreError(.customerNotFound(name)) }
    package static func scriptNotFound(customer: String, name: String) -> StoreError {
        StoreError(.scriptNotFound(customer: customer, name: name))
    }
    package static func scriptVersionNotFound(customer: String, name: String, version: Int, latest: Int) -> StoreError {
        StoreError(.scriptVersionNotFound(customer: customer, name: name, version: version, latest: latest))
    }
    package static func noEarlierVersion(customer: String, name: String, active: Int) -> StoreError {
        StoreError(.noEarlierVersion(customer: customer, name: name, active: active))
    }
    package static func artifactNotFound(_ kind: ArtifactKind, _ version: Int) -> StoreError {
        StoreError(.artifactNotFound(kind: kind.rawValue, version: version))
    }
    package static func rolloutNotFound(_ id: Int) -> StoreError { StoreError(.rolloutNotFound(id)) }
    package static func rolloutInProgress(_ kind: ArtifactKind, id: Int) -> StoreError {
        StoreError(.rolloutInProgress(kind: kind.rawValue, id: id))
    }
    package static func rolloutFinished(_ id: Int) -> StoreError { StoreError(.rolloutFinished(id)) }
    package static func deploymentNotFound(_ id: Int) -> StoreError { StoreError(.deploymentNotFound(id)) }
    package static func deploymentInProgress(customer: String, name: String, id: Int) -> StoreError {
        StoreError(.deploymentInProgress(customer: customer, name: name, id: id))
    }
    package static func deploymentOfActiveVersion(customer: String, name: String, version: Int) -> StoreError {
        StoreError(.deploymentOfActiveVersion(customer: customer, name: name, version: version))
    }
    package static func deploymentFinished(_ id: Int) -> StoreError { StoreError(.deploymentFinished(id)) }
    package static func missingStore(path: String) -> StoreError { StoreError(.missingStore(path: path)) }
    package static func orphanedLog(path: String) -> StoreError { StoreError(.orphanedLog(path: path)) }
    package static func damagedLog(path: String, _ detail: String) -> StoreError { StoreError(.damagedLog(path: path, detail: detail)) }
    package static func notSQLite(path: String) -> StoreError { StoreError(.notSQLite(path: path)) }
    package static func notBulkhead(path: String, applicationID: Int32) -> StoreError {
        StoreError(.notBulkhead(path: path, applicationID: applicationID))
    }
    package static func truncated(path: String, _ detail: String) -> StoreError { StoreError(.truncated(path: path, detail: detail)) }
    package static func corrupt(path: String, _ detail: String) -> StoreError { StoreError(.corrupt(path: path, detail: detail)) }
    package static func newerSchema(path: String, unknownMigrations: [String]) -> StoreError {
        StoreError(.newerSchema(path: path, unknownMigrations: unknownMigrations))
    }
    package static func diskFull(path: String, operation: String) -> StoreError {
        StoreError(.diskFull(path: path, operation: operation))
    }
    package static func busy(path: String, operation: String, message: String) -> StoreError {
        StoreError(.busy(path: path, operation: operation, message: message))
    }
    package static func database(path: String, operation: String, code: Int32, message: String, damaged: Bool) -> StoreError {
        StoreError(.database(path: path, operation: operation, code: code, message: message, damaged: damaged))
    }
    package static func unreadable(path: String, what: String, detail: String) -> StoreError {
        StoreError(.unreadable(path: path, what: what, detail: detail))
    }
    package static func cannotOpen(path: String, _ detail: String) -> StoreError {
        StoreError(.cannotOpen(path: path, detail: detail))
    }
    package static func unreadableSetting(_ key: String, value: String, expected: String) -> StoreError {
        StoreError(.unreadableSetting(key: key, value: value, expected: expected))
    }
}

// MARK: - Makers for remote backends (etcd)

extension StoreError {
    /// A remote store (etcd) that cannot be reached or has no quorum: kind ``Kind/unreachable``.
    package static func remoteUnreachable(store: String, operation: String, detail: String) -> StoreError {
        StoreError(.remoteUnreachable(store: store, operation: operation, detail: detail))
    }
    /// A remote store that answered with an error the caller cannot fix (permission, a server error).
    package static func remoteFailed(store: String, operation: String, detail: String) -> StoreError {
        StoreError(.remoteFailed(store: store, operation: operation, detail: detail))
    }
    /// A value in a remote store that does not decode or does not match its hash.
    package static func remoteUnreadable(store: String, key: String, detail: String) -> StoreError {
        StoreError(.remoteUnreadable(store: store, key: key, detail: detail))
    }
    /// A write that lost its compare-and-swap race `attempts` times in a row.
    package static func contended(store: String, operation: String, attempts: Int) -> StoreError {
        StoreError(.contended(store: store, operation: operation, attempts: attempts))
    }
    /// A write refused because the condition it carries (the driver's leadership) no longer holds.
    package static func fenced(store: String, operation: String) -> StoreError {
        StoreError(.fenced(store: store, operation: operation))
    }
}
