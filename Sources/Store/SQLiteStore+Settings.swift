import Foundation
import GRDB

// MARK: - SettingsStore

extension SQLiteStore {
    /// The value of `key`, or nil.
    public func setting(_ key: String) throws -> String? {
        try checkSettingKey(key)
        return try read("read setting \(key)") { db in
            try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key])
        }
    }

    /// Every setting.
    public func settings() throws -> [String: String] {
        try read("read the settings") { db in
            var settings: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM settings") {
                settings[try row.decode(String.self, forColumn: "key")] = try row.decode(String.self, forColumn: "value")
            }
            return settings
        }
    }

    /// Sets or (with nil) removes `key`.
    public func setSetting(_ key: String, to value: String?, actor: String) throws {
        try checkSettingKey(key)
        try checkActor(actor)
        try StoreArguments.checkSettingValue(key, value)
        try write("\(value == nil ? "clear" : "change") setting \(key)") { db in
            let previous = try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key])
            let at = now()
            if let value {
                try db.execute(
                    sql: """
                        INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
                        ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                        """,
                    arguments: [key, value, at])
            } else {
                try db.execute(sql: "DELETE FROM settings WHERE key = ?", arguments: [key])
            }
            try insertAudit(
                db, at: at, actor: actor, action: value == nil ? .settingCleared : .settingSet, subject: "setting/\(key)",
                detail: ["value": .optional(value), "previous": .optional(previous)])
            try recordChange(db, .ofSetting(key), at: at)
        }
    }

    private func checkSettingKey(_ key: String) throws {
        try StoreArguments.checkSettingKey(key)
    }
}
