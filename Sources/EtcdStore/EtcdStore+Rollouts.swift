import BulkheadCore
import Foundation
import Store

// MARK: - RolloutStore

extension EtcdStore {
    /// Creates a rollout; refused while another rollout of the kind is unfinished.
    public func createRollout(
        kind: ArtifactKind, version: Int, fromVersion: Int, status: String, state: Data, actor: String
    ) throws -> RolloutRecord {
        try StoreArguments.checkActor(actor)
        try StoreArguments.checkRolloutStatus(status)
        try StoreArguments.checkFromVersion(fromVersion)
        return try write("create a rollout of \(kind) artifact \(version)") { attempt in
            let read = try await attempt.read([
                Keys.artifact(kind, version), Keys.runningRollout(kind), Keys.rolloutNext, Keys.auditNext,
            ])
            guard version >= 1, read[0] != nil else { throw StoreError.artifactNotFound(kind, version) }
            if let running = read[1] {
                throw StoreError.rolloutInProgress(kind, id: try self.decode(RunningRecord.self, running).id)
            }
            let id = try read[2].map { try self.decode(Counter.self, $0).next } ?? 1
            let at = self.now()
            let record = RolloutRecord(
                id: id, kind: kind, version: version, fromVersion: fromVersion, status: status, finished: false,
                state: state, createdAt: at, updatedAt: at, createdBy: actor)
            try attempt.put(Keys.rollout(id), RolloutRecordValue(record))
            try attempt.putBytes(Keys.rolloutState(id), Array(state))
            try attempt.put(Keys.runningRollout(kind), RunningRecord(id: id))
            try attempt.put(Keys.rolloutNext, Counter(next: id + 1))
            _ = try await attempt.audit(
                at: at, actor: actor, action: .rolloutCreated, subject: "rollout/\(id)",
                detail: [
                    "kind": .string(kind.rawValue), "version": .int(version), "from_version": .int(fromVersion),
                    "status": .string(status),
                ])
            return record
        }
    }

    /// Replaces a rollout's status and state; a finished rollout stays finished.
    public func updateRollout(id: Int, status: String, state: Data, finished: Bool, actor: String) throws -> RolloutRecord {
        try StoreArguments.checkActor(actor)
        try StoreArguments.checkRolloutStatus(status)
        return try write("update rollout \(id)") { attempt in
            let read = try await attempt.read([Keys.rollout(id), Keys.auditNext])
            guard let kv = read[0] else { throw StoreError.rolloutNotFound(id) }
            var record = try self.decode(RolloutRecordValue.self, kv).record(state: state)
            if record.finished, !finished { throw StoreError.rolloutFinished(id) }
            let wasFinished = record.finished
            let previousStatus = record.status
            record.status = status
            record.finished = finished
            record.updatedAt = self.now()
            try attempt.put(Keys.rollout(id), RolloutRecordValue(record))
            try attempt.putBytes(Keys.rolloutState(id), Array(state))
            if finished, !wasFinished,
                let running = try await attempt.value(Keys.runningRollout(record.kind), as: RunningRecord.self),
                running.id == id
            {
                try attempt.delete(Keys.runningRollout(record.kind))
            }
            _ = try await attempt.audit(
                at: record.updatedAt, actor: actor, action: .rolloutUpdated, subject: "rollout/\(id)",
                detail: [
                    "kind": .string(record.kind.rawValue), "version": .int(record.version),
                    "previous_status": .string(previousStatus), "status": .string(status), "finished": .bool(finished),
                ])
            return record
        }
    }

    /// One rollout, or nil.
    public func rollout(id: Int) throws -> RolloutRecord? {
        try read("read rollout \(id)") { reader in try await self.rollout(id, reader) }
    }

    /// The newest rollouts first, at most `limit`.
    public func rollouts(limit: Int) throws -> [RolloutRecord] {
        try StoreArguments.checkRolloutLimit(limit)
        return try read("list rollouts") { reader in
            // Ids are dense from 1: the newest `limit` are the ones below the next id.
            let next = try await reader.value(Keys.rolloutNext, as: Counter.self)?.next ?? 1
            let first = max(1, next - limit)
            guard first < next else { return [] }
            let records = try await reader.range(from: Keys.rollout(first), to: Keys.rollout(next))
            let states = try await reader.range(from: Keys.rolloutState(first), to: Keys.rolloutState(next))
            var stateByKey: [String: Data] = [:]
            for kv in states { stateByKey[String(kv.keyString.suffix(10))] = Data(kv.value) }
            return try records.reversed().map { kv in
                try self.decode(RolloutRecordValue.self, kv).record(state: stateByKey[String(kv.keyString.suffix(10))] ?? Data())
            }
        }
    }

    /// The unfinished rollout of `kind`, or nil.
    public func runningRollout(kind: ArtifactKind) throws -> RolloutRecord? {
        try read("read the running \(kind) rollout") { reader in
            guard let running = try await reader.value(Keys.runningRollout(kind), as: RunningRecord.self) else { return nil }
            return try await self.rollout(running.id, reader)
        }
    }

    private func rollout(_ id: Int, _ reader: Reader) async throws -> RolloutRecord? {
        guard let kv = try await reader.get(Keys.rollout(id)) else { return nil }
        let state = try await reader.get(Keys.rolloutState(id)).map { Data($0.value) } ?? Data()
        return try decode(RolloutRecordValue.self, kv).record(state: state)
    }
}
