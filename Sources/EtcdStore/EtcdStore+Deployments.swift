import BulkheadCore
import Foundation
import Store

// MARK: - DeploymentStore

extension EtcdStore {
    /// Stores the script's next version without making it active. A new script, or a
    /// deleted one (nothing of it is served), gets this version active, as an upload
    /// gives it; a live script keeps its active version and its quarantine.
    public func putScriptVersionInactive(customer: String, name: String, source: String, actor: String) throws -> ScriptVersion {
        try checkScript(customer, name)
        try StoreArguments.checkActor(actor)
        try checkContentSize("script \(customer)/\(name)", source)
        // Hashed once, outside the retries.
        let bytes = Array(source.utf8)
        let sha256 = SHA256Hasher.hex(bytes)
        let size = bytes.count
        return try write("save script \(customer)/\(name) without making it active") { attempt in
            let read = try await attempt.read([
                Keys.customer(customer), Keys.script(customer, name), Keys.auditNext, Keys.blobMeta(sha256),
            ])
            guard read[0] != nil else { throw StoreError.customerNotFound(customer) }
            let at = self.now()
            let version: Int
            let undeleted: Bool
            var head: ScriptHead
            if let existing = read[1] {
                head = try self.decode(ScriptHead.self, existing)
                // The head's compare makes this number this write's alone.
                version = head.latestVersion + 1
                undeleted = head.deleted
                head.latestVersion = version
                if undeleted {
                    // A deleted script serves nothing: its new version is all there is.
                    head.activeVersion = version
                    head.sha256 = sha256
                    head.size = size
                    head.deleted = false
                    head.quarantined = false
                    head.quarantineReason = nil
                    head.updatedAt = at
                }
            } else {
                version = 1
                undeleted = false
                head = ScriptHead(
                    activeVersion: 1, latestVersion: 1, sha256: sha256, size: size, deleted: false, quarantined: false,
                    quarantineReason: nil, createdAt: at, updatedAt: at)
            }
            try await self.stageBlob(bytes, sha256: sha256, in: attempt)
            let record = VersionRecord(version: version, sha256: sha256, size: size, createdAt: at, createdBy: actor)
            try attempt.put(Keys.scriptVersion(customer, name, version), record)
            try attempt.put(Keys.script(customer, name), head)
            _ = try await attempt.audit(
                at: at, actor: actor, action: .scriptStaged, subject: "script/\(customer)/\(name)",
                detail: [
                    "version": .int(version), "sha256": .string(sha256), "size": .int(size),
                    "active_version": .int(head.activeVersion), "undeleted": .bool(undeleted),
                ])
            return record.scriptVersion(customer: customer, name: name)
        }
    }

    /// Creates a deployment of `version` of the script from its active version, and
    /// puts its split in the script's head.
    public func createDeployment(
        customer: String, name: String, version: Int, keyHeader: String?, percent: Double, status: String, state: Data,
        actor: String
    ) throws -> DeploymentRecord {
        try checkScript(customer, name)
        try StoreArguments.checkActor(actor)
        try StoreArguments.checkDeploymentStatus(status)
        try StoreArguments.checkDeploymentPercent(percent)
        try StoreArguments.checkKeyHeader(keyHeader)
        return try write("create a deployment of script \(customer)/\(name) version \(version)") { attempt in
            var head = try await self.liveHead(attempt, customer: customer, name: name)
            guard version >= 1, version <= head.latestVersion else {
                throw StoreError.scriptVersionNotFound(
                    customer: customer, name: name, version: version, latest: head.latestVersion)
            }
            let read = try await attempt.read([
                Keys.scriptVersion(customer, name, version), Keys.runningDeployment(customer, name), Keys.deploymentNext,
            ])
            // The head's split and the running key are written together; either one
            // names the unfinished deployment, and their compares keep it the only one.
            if let split = head.split {
                throw StoreError.deploymentInProgress(customer: customer, name: name, id: split.deployment)
            }
            if let running = read[1] {
                throw StoreError.deploymentInProgress(customer: customer, name: name, id: try self.decode(RunningRecord.self, running).id)
            }
            guard version != head.activeVersion else {
                throw StoreError.deploymentOfActiveVersion(customer: customer, name: name, version: version)
            }
            guard let versionKV = read[0] else {
                throw StoreError.remoteUnreadable(
                    store: self.location, key: self.key(Keys.scriptVersion(customer, name, version)),
                    detail: "version \(version) is missing below the latest version \(head.latestVersion)")
            }
            let candidate = try self.decode(VersionRecord.self, versionKV)
            let id = try read[2].map { try self.decode(Counter.self, $0).next } ?? 1
            let at = self.now()
            let record = DeploymentRecord(
                id: id, customer: customer, name: name, version: version, fromVersion: head.activeVersion,
                keyHeader: keyHeader, percent: percent, status: status, finished: false, state: state, createdAt: at,
                updatedAt: at, createdBy: actor)
            head.split = SplitRecord(
                deployment: id, version: version, sha256: candidate.sha256, percent: percent, keyHeader: keyHeader)
            try attempt.put(Keys.deployment(id), DeploymentRecordValue(record))
            try attempt.putBytes(Keys.deploymentState(id), Array(state))
            try attempt.put(Keys.runningDeployment(customer, name), RunningRecord(id: id))
            try attempt.put(Keys.scriptDeployment(customer, name, id), RunningRecord(id: id))
            try attempt.put(Keys.deploymentNext, Counter(next: id + 1))
            try attempt.put(Keys.script(customer, name), head)
            _ = try await attempt.audit(
                at: at, actor: actor, action: .deploymentCreated, subject: "deployment/\(id)",
                detail: [
                    "script": .string("\(customer)/\(name)"), "version": .int(version),
                    "from_version": .int(record.fromVersion), "key_header": .optional(keyHeader),
                    "percent": .double(percent), "status": .string(status),
                ])
            return record
        }
    }

    /// Replaces a deployment's status, state and share; `end` finishes it (the share
    /// goes to 0 whatever `percent` says).
    public func updateDeployment(
        id: Int, status: String, state: Data, percent: Double, end: DeploymentEnd?, actor: String
    ) throws -> DeploymentRecord {
        try StoreArguments.checkActor(actor)
        try StoreArguments.checkDeploymentStatus(status)
        try StoreArguments.checkDeploymentPercent(percent)
        return try write("update deployment \(id)") { attempt in
            let read = try await attempt.read([Keys.deployment(id), Keys.auditNext])
            guard let kv = read[0] else { throw StoreError.deploymentNotFound(id) }
            var record = try self.decode(DeploymentRecordValue.self, kv).record(state: state)
            if record.finished { throw StoreError.deploymentFinished(id) }
            let scriptKey = Keys.script(record.customer, record.name)
            guard let headKV = try await attempt.get(scriptKey) else {
                throw StoreError.remoteUnreadable(
                    store: self.location, key: self.key(scriptKey), detail: "unfinished deployment \(id) names a script with no head")
            }
            var head = try self.decode(ScriptHead.self, headKV)
            guard var split = head.split, split.deployment == id else {
                throw StoreError.remoteUnreadable(
                    store: self.location, key: headKV.keyString,
                    detail: "the head's split names deployment \(head.split.map { String($0.deployment) } ?? "none"), "
                        + "not unfinished deployment \(id)")
            }
            let previousStatus = record.status
            let at = self.now()
            record.status = status
            record.percent = end == nil ? percent : 0
            record.finished = end != nil
            record.updatedAt = at
            var detail: AuditDetail = [
                "script": .string("\(record.customer)/\(record.name)"), "version": .int(record.version),
                "previous_status": .string(previousStatus), "status": .string(status), "percent": .double(record.percent),
                "finished": .bool(record.finished), "end": .optional(end.map(Self.endWord)),
            ]
            switch end {
            case nil:
                // An unchanged share leaves the head (and so the hosts' feed) alone.
                if split.percent != record.percent {
                    split.percent = record.percent
                    head.split = split
                    try attempt.put(scriptKey, head)
                }
            case .revert?:
                head.split = nil
                try attempt.put(scriptKey, head)
            case .promote?:
                guard
                    let candidate = try await attempt.value(
                        Keys.scriptVersion(record.customer, record.name, record.version), as: VersionRecord.self)
                else {
                    throw StoreError.remoteUnreadable(
                        store: self.location, key: self.key(Keys.scriptVersion(record.customer, record.name, record.version)),
                        detail: "deployment \(id) promotes version \(record.version), which is not stored")
                }
                // The candidate is new code for everyone: like an upload, a fresh chance.
                detail = detail.merging(["released_quarantine": .bool(head.quarantined)])
                head.activeVersion = record.version
                head.sha256 = candidate.sha256
                head.size = candidate.size
                head.quarantined = false
                head.quarantineReason = nil
                head.updatedAt = at
                head.split = nil
                try attempt.put(scriptKey, head)
            }
            if end != nil {
                try await self.releaseRunning(id, customer: record.customer, name: record.name, in: attempt)
            }
            try attempt.put(Keys.deployment(id), DeploymentRecordValue(record))
            try attempt.putBytes(Keys.deploymentState(id), Array(state))
            _ = try await attempt.audit(
                at: at, actor: actor, action: .deploymentUpdated, subject: "deployment/\(id)", detail: detail)
            return record
        }
    }

    /// One deployment, or nil.
    public func deployment(id: Int) throws -> DeploymentRecord? {
        try read("read deployment \(id)") { reader in try await self.deployment(id, reader) }
    }

    /// The deployments of the script, newest first, at most `limit` (none for an
    /// unknown script).
    public func deployments(customer: String, name: String, limit: Int) throws -> [DeploymentRecord] {
        try checkScript(customer, name)
        try StoreArguments.checkDeploymentLimit(limit)
        return try read("list the deployments of script \(customer)/\(name)") { reader in
            let ids = try await reader.list(Keys.scriptDeployments(customer, name)).map { kv in
                try self.decode(RunningRecord.self, kv).id
            }
            return try await self.deployments(Array(ids.suffix(limit).reversed()), reader)
        }
    }

    /// Every unfinished deployment, oldest first.
    public func unfinishedDeployments() throws -> [DeploymentRecord] {
        try read("list the unfinished deployments") { reader in
            let ids = try await reader.list(Keys.runningDeployments).map { kv in try self.decode(RunningRecord.self, kv).id }
            return try await self.deployments(ids.sorted(), reader)
        }
    }

    // MARK: Shared with the script writes

    /// Ends the script's unfinished deployment, if `head` has one, inside the write
    /// `attempt` (a rollback or a delete): status `aborted`, finished, share 0, and
    /// the split taken off `head`, which the caller writes. Returns the deployment's
    /// id. The caller audits.
    func abortDeployment(
        of head: inout ScriptHead, customer: String, name: String, at: Date, in attempt: Attempt
    ) async throws -> Int? {
        guard let split = head.split else { return nil }
        let id = split.deployment
        guard let kv = try await attempt.get(Keys.deployment(id)) else {
            throw StoreError.remoteUnreadable(
                store: location, key: key(Keys.script(customer, name)),
                detail: "the head's split names deployment \(id), which is not stored")
        }
        var record = try decode(DeploymentRecordValue.self, kv)
        record.status = "aborted"
        record.finished = true
        record.percent = 0
        record.updatedAt = at
        try attempt.put(Keys.deployment(id), record)
        try await releaseRunning(id, customer: customer, name: name, in: attempt)
        head.split = nil
        return id
    }

    /// How an end reads in the audit log (as SQLite writes it).
    static func endWord(_ end: DeploymentEnd) -> String {
        switch end {
        case .promote: "promote"
        case .revert: "revert"
        }
    }

    // MARK: Internals

    /// Deletes the script's running key when it names deployment `id`.
    private func releaseRunning(_ id: Int, customer: String, name: String, in attempt: Attempt) async throws {
        let running = Keys.runningDeployment(customer, name)
        if let record = try await attempt.value(running, as: RunningRecord.self), record.id == id {
            try attempt.delete(running)
        }
    }

    private func deployment(_ id: Int, _ reader: Reader) async throws -> DeploymentRecord? {
        guard let kv = try await reader.get(Keys.deployment(id)) else { return nil }
        let state = try await reader.get(Keys.deploymentState(id)).map { Data($0.value) } ?? Data()
        return try decode(DeploymentRecordValue.self, kv).record(state: state)
    }

    /// The deployments `ids`, in that order; an id without a record is a damaged store.
    private func deployments(_ ids: [Int], _ reader: Reader) async throws -> [DeploymentRecord] {
        var records: [DeploymentRecord] = []
        for id in ids {
            guard let record = try await deployment(id, reader) else {
                throw StoreError.remoteUnreadable(
                    store: location, key: key(Keys.deployment(id)), detail: "a listing names deployment \(id), which is not stored")
            }
            records.append(record)
        }
        return records
    }
}
