import BulkheadCore
import Etcd
import Foundation
import Store

// MARK: - ScriptStore

extension EtcdStore {
    /// Stores the script's next version, makes it active, undeletes and releases it;
    /// refused while the script has an unfinished deployment.
    public func putScriptVersion(customer: String, name: String, source: String, actor: String) throws -> ScriptVersion {
        try checkScript(customer, name)
        try StoreArguments.checkActor(actor)
        try checkContentSize("script \(customer)/\(name)", source)
        // Hashed once, outside the retries.
        let bytes = Array(source.utf8)
        let sha256 = SHA256Hasher.hex(bytes)
        let size = bytes.count
        return try write("save script \(customer)/\(name)") { attempt in
            let read = try await attempt.read([
                Keys.customer(customer), Keys.script(customer, name), Keys.auditNext, Keys.blobMeta(sha256),
            ])
            guard read[0] != nil else { throw StoreError.customerNotFound(customer) }
            let at = self.now()
            let version: Int
            var head: ScriptHead
            var detail: AuditDetail
            if let existing = read[1] {
                head = try self.decode(ScriptHead.self, existing)
                // New code live under a deployment would pull the script from under it.
                if let split = head.split {
                    throw StoreError.deploymentInProgress(customer: customer, name: name, id: split.deployment)
                }
                // The head's compare makes this number this write's alone.
                version = head.latestVersion + 1
                detail = [
                    "previous_version": .int(head.activeVersion),
                    "undeleted": .bool(head.deleted),
                    "released_quarantine": .bool(head.quarantined),
                ]
                head.activeVersion = version
                head.latestVersion = version
                head.deleted = false
                head.quarantined = false
                head.quarantineReason = nil
                head.updatedAt = at
            } else {
                version = 1
                head = ScriptHead(
                    activeVersion: 1, latestVersion: 1, sha256: sha256, size: size, deleted: false, quarantined: false,
                    quarantineReason: nil, createdAt: at, updatedAt: at)
                detail = ["previous_version": .null, "undeleted": false, "released_quarantine": false]
            }
            head.sha256 = sha256
            head.size = size
            try await self.stageBlob(bytes, sha256: sha256, in: attempt)
            let record = VersionRecord(version: version, sha256: sha256, size: size, createdAt: at, createdBy: actor)
            try attempt.put(Keys.scriptVersion(customer, name, version), record)
            try attempt.put(Keys.script(customer, name), head)
            detail = detail.merging(["version": .int(version), "sha256": .string(sha256), "size": .int(size)])
            _ = try await attempt.audit(
                at: at, actor: actor, action: .scriptPut, subject: "script/\(customer)/\(name)", detail: detail)
            return record.scriptVersion(customer: customer, name: name)
        }
    }

    /// The customer's scripts (not deleted), by name.
    public func scripts(ofCustomer customer: String) throws -> [ScriptSummary] {
        try StoreArguments.checkName("customer", customer)
        return try read("list the scripts of \(customer)") { reader in
            try await self.summaries(reader.list(Keys.scripts(of: customer)))
        }
    }

    /// One script of the customer, or nil when it does not exist or is deleted.
    public func script(customer: String, name: String) throws -> ScriptSummary? {
        try checkScript(customer, name)
        return try read("read script \(customer)/\(name)") { reader in
            guard let head = try await reader.value(Keys.script(customer, name), as: ScriptHead.self), !head.deleted else {
                return nil
            }
            return head.summary(customer: customer, name: name)
        }
    }

    /// Every version of the script, oldest first.
    public func scriptVersions(customer: String, name: String) throws -> [ScriptVersion] {
        try checkScript(customer, name)
        return try read("list the versions of script \(customer)/\(name)") { reader in
            _ = try await self.liveHead(reader, customer: customer, name: name)
            return try await reader.list(Keys.scriptVersions(customer, name)).map { kv in
                try self.decode(VersionRecord.self, kv).scriptVersion(customer: customer, name: name)
            }
        }
    }

    /// The source of `version`, or of the active version when nil.
    public func scriptSource(customer: String, name: String, version: Int?) throws -> ScriptSource {
        try checkScript(customer, name)
        return try read("read the source of script \(customer)/\(name)") { reader in
            let head = try await self.liveHead(reader, customer: customer, name: name)
            let wanted = version ?? head.activeVersion
            guard wanted >= 1,
                let record = try await reader.value(Keys.scriptVersion(customer, name, wanted), as: VersionRecord.self)
            else {
                throw StoreError.scriptVersionNotFound(
                    customer: customer, name: name, version: wanted, latest: head.latestVersion)
            }
            return ScriptSource(
                version: record.scriptVersion(customer: customer, name: name),
                source: try await self.loadText(record.sha256, reader: reader))
        }
    }

    /// Makes an earlier (or the given) version active again, ending the script's
    /// unfinished deployment (aborted).
    public func rollbackScript(customer: String, name: String, to version: Int?, actor: String) throws -> ScriptSummary {
        try checkScript(customer, name)
        try StoreArguments.checkActor(actor)
        return try write("roll back script \(customer)/\(name)") { attempt in
            var head = try await self.liveHead(attempt, customer: customer, name: name)
            let latest = head.latestVersion
            let target: Int
            if let version {
                guard version >= 1, version <= latest else {
                    throw StoreError.scriptVersionNotFound(customer: customer, name: name, version: version, latest: latest)
                }
                target = version
            } else {
                // "Previous" is the version numbered just below the active one: every
                // version is kept, so it exists whenever the active one is above 1.
                guard head.activeVersion > 1 else {
                    throw StoreError.noEarlierVersion(customer: customer, name: name, active: head.activeVersion)
                }
                target = head.activeVersion - 1
            }
            guard let record = try await attempt.value(Keys.scriptVersion(customer, name, target), as: VersionRecord.self) else {
                throw StoreError.remoteUnreadable(
                    store: self.location, key: self.key(Keys.scriptVersion(customer, name, target)),
                    detail: "version \(target) is missing below the latest version \(latest)")
            }
            // Other code is active now: like an upload, that deserves a fresh chance.
            let releases = head.quarantined && target != head.activeVersion
            let previous = head.activeVersion
            let at = self.now()
            head.activeVersion = target
            head.sha256 = record.sha256
            head.size = record.size
            head.updatedAt = at
            if releases {
                head.quarantined = false
                head.quarantineReason = nil
            }
            var detail: AuditDetail = ["from": .int(previous), "to": .int(target), "released_quarantine": .bool(releases)]
            if let aborted = try await self.abortDeployment(of: &head, customer: customer, name: name, at: at, in: attempt) {
                detail = detail.merging(["aborted_deployment": .int(aborted)])
            }
            try attempt.put(Keys.script(customer, name), head)
            _ = try await attempt.audit(
                at: at, actor: actor, action: .scriptRolledBack, subject: "script/\(customer)/\(name)", detail: detail)
            return head.summary(customer: customer, name: name)
        }
    }

    /// Hides the script, ending its unfinished deployment (aborted); its versions stay
    /// for a later upload to continue.
    public func deleteScript(customer: String, name: String, actor: String) throws {
        try checkScript(customer, name)
        try StoreArguments.checkActor(actor)
        try write("delete script \(customer)/\(name)") { attempt in
            var head = try await self.liveHead(attempt, customer: customer, name: name)
            let at = self.now()
            head.deleted = true
            head.updatedAt = at
            var detail: AuditDetail = ["active_version": .int(head.activeVersion)]
            if let aborted = try await self.abortDeployment(of: &head, customer: customer, name: name, at: at, in: attempt) {
                detail = detail.merging(["aborted_deployment": .int(aborted)])
            }
            try attempt.put(Keys.script(customer, name), head)
            _ = try await attempt.audit(
                at: at, actor: actor, action: .scriptDeleted, subject: "script/\(customer)/\(name)", detail: detail)
        }
    }

    /// Quarantines or releases the script.
    public func setScriptQuarantined(
        customer: String, name: String, quarantined: Bool, reason: String?, actor: String
    ) throws -> ScriptSummary {
        try checkScript(customer, name)
        try StoreArguments.checkActor(actor)
        try StoreArguments.checkQuarantineReason(reason)
        return try write("\(quarantined ? "quarantine" : "release") script \(customer)/\(name)") { attempt in
            var head = try await self.liveHead(attempt, customer: customer, name: name)
            let at = self.now()
            head.quarantined = quarantined
            head.quarantineReason = quarantined ? reason : nil
            head.updatedAt = at
            try attempt.put(Keys.script(customer, name), head)
            _ = try await attempt.audit(
                at: at, actor: actor, action: quarantined ? .scriptQuarantined : .scriptReleased,
                subject: "script/\(customer)/\(name)",
                detail: ["version": .int(head.activeVersion), "reason": .optional(reason)])
            return head.summary(customer: customer, name: name)
        }
    }

    /// Every customer's scripts (not deleted), by customer then name.
    public func allScripts() throws -> [ScriptSummary] {
        try read("list all scripts") { reader in
            try await self.summaries(reader.list(Keys.allScripts))
        }
    }

    /// The active version of every script not deleted, with its owner's cohort and
    /// the split of its unfinished deployment (with the candidate's source).
    public func activeScripts() throws -> [ActiveScript] {
        try read("list the active scripts") { reader in
            let heads = try await reader.list(Keys.allScripts)
            var cohorts: [String: String] = [:]
            for kv in try await reader.list(Keys.customers) {
                let customer = try self.decode(CustomerRecord.self, kv)
                cohorts[customer.name] = customer.cohort
            }
            // As SQLite's join: a script whose customer is gone is not shipped.
            let live = try self.liveHeads(heads).filter { cohorts[$0.0] != nil }
            let sources = try await self.loadTexts(Set(live.flatMap { $0.2.servedHashes }), reader: reader)
            return try live.compactMap { customer, name, head -> ActiveScript? in
                guard let cohort = cohorts[customer], let source = sources[head.sha256] else { return nil }
                return ActiveScript(
                    spec: ScriptSpec(
                        customer: customer, name: name, version: head.activeVersion, source: source,
                        split: try self.servedSplit(head, sources: sources, key: Keys.script(customer, name))),
                    cohort: cohort, sha256: head.sha256, quarantined: head.quarantined)
            }
        }
    }

    // MARK: Internals

    /// The head's split as a worker serves it, its candidate's source taken from
    /// `sources` (by hash); nil while the share is 0.
    func servedSplit(_ head: ScriptHead, sources: [String: String], key relative: String) throws -> ScriptSplit? {
        guard let split = head.split, split.percent > 0 else { return nil }
        guard let source = sources[split.sha256] else {
            throw StoreError.remoteUnreadable(
                store: location, key: key(relative),
                detail: "the split of deployment \(split.deployment) names content \(split.sha256) that was not read")
        }
        return head.servedSplit(source: source)
    }

    /// The heads of `script/…` keys not deleted, by customer then name.
    private func liveHeads(_ kvs: [KeyValue]) throws -> [(String, String, ScriptHead)] {
        let scriptPrefix = key(Keys.allScripts)
        var heads: [(String, String, ScriptHead)] = []
        for kv in kvs {
            let parts = kv.keyString.dropFirst(scriptPrefix.count).split(separator: "/")
            guard parts.count == 2 else {
                throw StoreError.remoteUnreadable(store: location, key: kv.keyString, detail: "not a script key")
            }
            let head = try decode(ScriptHead.self, kv)
            if !head.deleted { heads.append((String(parts[0]), String(parts[1]), head)) }
        }
        // Key order puts `acme-b/` before `acme/` ('-' < '/'); SQLite orders by customer.
        return heads.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
    }

    private func summaries(_ kvs: [KeyValue]) throws -> [ScriptSummary] {
        try liveHeads(kvs).map { customer, name, head in head.summary(customer: customer, name: name) }
    }

    /// The script's head, or not found when the customer or script is unknown or the
    /// script is deleted.
    private func liveHead(_ reader: Reader, customer: String, name: String) async throws -> ScriptHead {
        guard let head = try await reader.value(Keys.script(customer, name), as: ScriptHead.self), !head.deleted else {
            guard try await reader.get(Keys.customer(customer)) != nil else { throw StoreError.customerNotFound(customer) }
            throw StoreError.scriptNotFound(customer: customer, name: name)
        }
        return head
    }

    /// The same, inside a write (and it reads the audit counter in the same round trip).
    func liveHead(_ attempt: Attempt, customer: String, name: String) async throws -> ScriptHead {
        let read = try await attempt.read([Keys.script(customer, name), Keys.customer(customer), Keys.auditNext])
        guard let kv = read[0], case let head = try decode(ScriptHead.self, kv), !head.deleted else {
            guard read[1] != nil else { throw StoreError.customerNotFound(customer) }
            throw StoreError.scriptNotFound(customer: customer, name: name)
        }
        return head
    }
}
