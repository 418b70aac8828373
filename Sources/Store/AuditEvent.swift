import Foundation

/// One row of the append-only audit log: who did what to which thing, and the numbers.
public struct AuditEvent: Codable, Sendable, Equatable {
    /// Increasing id, never reused; `events --follow` asks for the rows after the last one it saw.
    public var id: Int
    /// When it happened.
    public var at: Date
    /// Who did it: `customer:acme`, `admin`, `cli`, `supervisor`, `rollout`, `break-glass`, …
    public var actor: String
    /// What was done.
    public var action: AuditAction
    /// What it was done to: `customer/acme`, `script/acme/hello`, `artifact/rules/3`,
    /// `rollout/4`, `deployment/7`, `setting/frozen`, `pool/free`.
    public var subject: String
    /// The details as a JSON text (an object for the store's own events).
    public var detail: String

    /// Creates a value.
    public init(id: Int, at: Date, actor: String, action: AuditAction, subject: String, detail: String) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.subject = subject
        self.detail = detail
    }
}

/// The name of an audited action. The store writes the ones below; other parts of
/// bulkhead add their own (`break-glass.rollback`) with ``init(_:)``.
public struct AuditAction: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible {
    /// The action's name, dotted: `script.put`.
    public var rawValue: String

    /// Wraps a name.
    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    /// Wraps a name.
    public init(_ rawValue: String) {
        self.rawValue = rawValue
    }

    /// The action's name.
    public var description: String { rawValue }

    /// A customer was added.
    public static let customerAdded = AuditAction("customer.add")
    /// A customer moved to another cohort.
    public static let customerMoved = AuditAction("customer.move")
    /// A customer's API token was replaced (the detail never holds the token or its hash).
    public static let customerTokenRotated = AuditAction("customer.rotate-token")
    /// A customer was removed with its scripts, their versions and deployments.
    public static let customerRemoved = AuditAction("customer.remove")
    /// A script version was uploaded (and became active).
    public static let scriptPut = AuditAction("script.put")
    /// A script's active version was set back (or to a given version).
    public static let scriptRolledBack = AuditAction("script.rollback")
    /// A script was deleted (hidden; its versions are kept).
    public static let scriptDeleted = AuditAction("script.delete")
    /// A script was quarantined.
    public static let scriptQuarantined = AuditAction("script.quarantine")
    /// A script's quarantine was lifted by an operator.
    public static let scriptReleased = AuditAction("script.unquarantine")
    /// A script version was stored without becoming active (to be deployed gradually);
    /// a new script's first version is active all the same.
    public static let scriptStaged = AuditAction("script.stage")
    /// A gradual deployment of a script version was created.
    public static let deploymentCreated = AuditAction("deployment.create")
    /// A deployment's status, state or share was updated, or it ended.
    public static let deploymentUpdated = AuditAction("deployment.update")
    /// A platform artifact version was stored.
    public static let artifactPut = AuditAction("artifact.put")
    /// A rollout was created.
    public static let rolloutCreated = AuditAction("rollout.create")
    /// A rollout's status or state was updated.
    public static let rolloutUpdated = AuditAction("rollout.update")
    /// A host-wide setting was set.
    public static let settingSet = AuditAction("setting.set")
    /// A host-wide setting was removed.
    public static let settingCleared = AuditAction("setting.clear")
    /// A pool's last known good cohort configuration changed.
    public static let knownGoodSaved = AuditAction("cohort.known-good")
    /// A control store's freeze and pins from before break glass moved into the host
    /// replica were brought into it (once).
    public static let breakGlassImported = AuditAction("break-glass.import")
}
