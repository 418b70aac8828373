import Foundation
import Store

// MARK: - SettingsStore

extension EtcdStore {
    /// The value of `key`, or nil.
    public func setting(_ key: String) throws -> String? {
        try StoreArguments.checkSettingKey(key)
        return try read("read setting \(key)") { reader in
            try await reader.value(Keys.setting(key), as: SettingRecord.self)?.value
        }
    }

    /// Every setting.
    public func settings() throws -> [String: String] {
        try read("read the settings") { reader in
            let settingPrefix = self.key(Keys.settings)
            var settings: [String: String] = [:]
            for kv in try await reader.list(Keys.settings) {
                settings[String(kv.keyString.dropFirst(settingPrefix.count))] = try self.decode(SettingRecord.self, kv).value
            }
            return settings
        }
    }

    /// Sets or (with nil) removes `key`.
    public func setSetting(_ key: String, to value: String?, actor: String) throws {
        try StoreArguments.checkSettingKey(key)
        try StoreArguments.checkActor(actor)
        try StoreArguments.checkSettingValue(key, value)
        try write("\(value == nil ? "clear" : "change") setting \(key)") { attempt in
            try await attempt.read([Keys.setting(key), Keys.auditNext])
            let previous = try await attempt.value(Keys.setting(key), as: SettingRecord.self)?.value
            let at = self.now()
            if let value {
                try attempt.put(Keys.setting(key), SettingRecord(value: value, updatedAt: at))
            } else {
                try attempt.delete(Keys.setting(key))
            }
            _ = try await attempt.audit(
                at: at, actor: actor, action: value == nil ? .settingCleared : .settingSet, subject: "setting/\(key)",
                detail: ["value": .optional(value), "previous": .optional(previous)])
        }
    }
}
