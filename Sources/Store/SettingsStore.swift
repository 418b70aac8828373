import BulkheadCore

/// A small key/value table of host-wide state: the freeze, break-glass pins, the
/// artifact version each pool runs, scale changes.
///
/// Keys are `[a-z0-9][a-z0-9._-]*`, at most 128 characters; ``SettingKey`` names the
/// ones bulkhead uses. The typed helpers below work on any backend.
public protocol SettingsStore: Sendable {
    /// The value of `key`, or nil when it is not set.
    func setting(_ key: String) throws -> String?

    /// Every setting.
    func settings() throws -> [String: String]

    /// Sets `key` to `value`, or removes it when `value` is nil. Audited either way.
    func setSetting(_ key: String, to value: String?, actor: String) throws
}

/// The setting keys bulkhead uses.
public enum SettingKey {
    /// `true` while rollouts were frozen, in a control store from before break glass
    /// moved into the host replica: read once, to import it (`HostOverrides`).
    public static let frozen = "frozen"

    /// The version of `kind` pinned by a break-glass rollback, in a control store from
    /// before break glass moved into the host replica: read once, to import it.
    public static func pinnedVersion(_ kind: ArtifactKind) -> String {
        "pinned.\(kind.rawValue)"
    }

    /// The version of `kind` the workers of `pool` run.
    public static func activeVersion(_ kind: ArtifactKind, pool: String) -> String {
        "active.\(kind.rawValue).\(pool)"
    }

    /// The worker count of `pool` set with `bulkhead cohort scale`, overriding its file.
    public static func workers(pool: String) -> String {
        "workers.\(pool)"
    }

    /// `true` while a fleet's rollouts are frozen fleet-wide (`bulkhead break-glass
    /// freeze --etcd`): the driver advances and starts nothing, whatever each host says.
    public static let fleetFrozen = "fleet-frozen"

    /// `true` while `host` is cordoned (`bulkhead host cordon NAME --etcd`): fleet
    /// rollouts neither plan it nor wait for it.
    public static func cordoned(_ host: String) -> String {
        "cordon.\(host)"
    }

    /// The prefix of every cordon key.
    public static let cordonPrefix = "cordon."
}

// MARK: - Typed helpers

extension SettingsStore {
    /// Whether the fleet's rollouts are frozen fleet-wide (false when never set).
    public func isFleetFrozen() throws -> Bool {
        try setting(SettingKey.fleetFrozen) == "true"
    }

    /// The hosts cordoned now, by name.
    public func cordonedHosts() throws -> Set<String> {
        Set(try settings().filter { $0.key.hasPrefix(SettingKey.cordonPrefix) && $0.value == "true" }
            .map { String($0.key.dropFirst(SettingKey.cordonPrefix.count)) })
    }

    /// Cordons (or uncordons) `host`, audited.
    public func setCordoned(_ host: String, _ cordoned: Bool, actor: String) throws {
        try setSetting(SettingKey.cordoned(host), to: cordoned ? "true" : nil, actor: actor)
    }

    /// Freezes (or thaws) the fleet's rollouts, audited.
    public func setFleetFrozen(_ frozen: Bool, actor: String) throws {
        try setSetting(SettingKey.fleetFrozen, to: frozen ? "true" : nil, actor: actor)
    }

    /// Whether a control store from before break glass moved into the host replica
    /// says rollouts are frozen (false when never set). Only the one-time import reads
    /// it; nothing writes it any more.
    public func legacyFrozen() throws -> Bool {
        guard let value = try setting(SettingKey.frozen) else { return false }
        switch value {
        case "true": return true
        case "false": return false
        default: throw StoreError.unreadableSetting(SettingKey.frozen, value: value, expected: "true or false")
        }
    }

    /// The version of `kind` a control store from before break glass moved into the
    /// host replica has pinned, or nil. Only the one-time import reads it.
    public func legacyPinnedVersion(of kind: ArtifactKind) throws -> Int? {
        try intSetting(SettingKey.pinnedVersion(kind))
    }

    /// The version of `kind` that `pool` runs, or nil when never recorded.
    public func activeVersion(of kind: ArtifactKind, inPool pool: String) throws -> Int? {
        try checkPool(pool)
        return try intSetting(SettingKey.activeVersion(kind, pool: pool))
    }

    /// Records the version of `kind` that `pool` runs (nil: forgets it).
    public func setActiveVersion(_ version: Int?, of kind: ArtifactKind, inPool pool: String, actor: String) throws {
        try checkPool(pool)
        try setIntSetting(SettingKey.activeVersion(kind, pool: pool), to: version, actor: actor)
    }

    /// The worker count `pool` was scaled to, or nil when its file decides.
    public func workerCount(ofPool pool: String) throws -> Int? {
        try checkPool(pool)
        return try intSetting(SettingKey.workers(pool: pool))
    }

    /// Records the worker count of `pool` (nil: back to its file's).
    public func setWorkerCount(_ workers: Int?, ofPool pool: String, actor: String) throws {
        try checkPool(pool)
        try setIntSetting(SettingKey.workers(pool: pool), to: workers, actor: actor)
    }

    private func intSetting(_ key: String) throws -> Int? {
        guard let value = try setting(key) else { return nil }
        guard let number = Int(value), number >= 0 else {
            throw StoreError.unreadableSetting(key, value: value, expected: "a whole number, 0 or more")
        }
        return number
    }

    private func setIntSetting(_ key: String, to value: Int?, actor: String) throws {
        if let value, value < 0 {
            throw StoreError.invalidArgument("setting \(key) must be 0 or more, got \(value)")
        }
        try setSetting(key, to: value.map(String.init), actor: actor)
    }

    private func checkPool(_ pool: String) throws {
        guard ResourceName.isValid(pool) else { throw StoreError.invalidName("pool", pool) }
    }
}
