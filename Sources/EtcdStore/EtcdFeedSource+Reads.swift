import BulkheadCore
import Etcd
import Foundation
import Store

// MARK: - Reading the rows changes name

extension EtcdFeedSource {
    /// The rows `changes` name, read at `revision`: what ``ChangeFeedReader`` reads
    /// for the same changes from SQLite (customers → cohort, or removed; scripts →
    /// active, or removed; then the stage rows of `readStageChanges`). Returns the update and the
    /// number of scripts read.
    func readChanges(_ changes: [StoreChange], at revision: Int) async throws -> (ReplicaUpdate, Int) {
        let reader = Reader(store: store, revision: Int64(revision))
        var update = ReplicaUpdate(revision: revision, isFullCopy: false)
        var customers: Set<String> = []
        var scripts: Set<ScriptAddress> = []
        for change in changes {
            switch change {
            case .customer(let name): customers.insert(name)
            case .script(let customer, let name): scripts.insert(ScriptAddress(customer: customer, name: name))
            case .activeArtifact, .rollout, .setting: break
            }
        }
        for name in customers.sorted() {
            if let record = try await reader.value(EtcdStore.Keys.customer(name), as: EtcdStore.CustomerRecord.self) {
                update.customers[name] = record.cohort
            } else {
                update.removedCustomers.append(name)
            }
        }
        for script in scripts.sorted() {
            if let active = try await activeScript(script, reader) {
                update.scripts.append(active)
            } else {
                update.removedScripts.append(script)
            }
        }
        update = try await readStageChanges(Self.unique(changes), reader, into: update)
        return (update, scripts.count)
    }

    /// Everything a host serves, at one revision (the first read's), every listing
    /// paged: customers, active scripts with their sources and splits, running
    /// rollouts and active versions with the artifacts they name.
    func readFullCopy() async throws -> (ReplicaUpdate, Int) {
        let reader = Reader(store: store)
        var cohorts: [String: String] = [:]
        for kv in try await reader.list(EtcdStore.Keys.customers) {
            let customer = try store.decode(EtcdStore.CustomerRecord.self, kv)
            cohorts[customer.name] = customer.cohort
        }
        var update = ReplicaUpdate(revision: Int(reader.revision), isFullCopy: true)
        update.customers = cohorts
        let scriptPrefix = store.key(EtcdStore.Keys.allScripts)
        var live: [(ScriptAddress, EtcdStore.ScriptHead)] = []
        for kv in try await reader.list(EtcdStore.Keys.allScripts) {
            let parts = kv.keyString.dropFirst(scriptPrefix.count).split(separator: "/")
            guard parts.count == 2 else {
                throw StoreError.remoteUnreadable(store: store.location, key: kv.keyString, detail: "not a script key")
            }
            let head = try store.decode(EtcdStore.ScriptHead.self, kv)
            // As SQLite's join: a script whose customer is gone is not shipped.
            guard !head.deleted, cohorts[String(parts[0])] != nil else { continue }
            live.append((ScriptAddress(customer: String(parts[0]), name: String(parts[1])), head))
        }
        live.sort { $0.0 < $1.0 }
        let sources = try await store.loadTexts(Set(live.flatMap { $0.1.servedHashes }), reader: reader)
        for (address, head) in live {
            guard let cohort = cohorts[address.customer], let source = sources[head.sha256] else { continue }
            let split = try store.servedSplit(head, sources: sources, key: EtcdStore.Keys.script(address.customer, address.name))
            update.scripts.append(
                ActiveScript(
                    spec: ScriptSpec(
                        customer: address.customer, name: address.name, version: head.activeVersion, source: source, split: split),
                    cohort: cohort, sha256: head.sha256, quarantined: head.quarantined))
        }
        // Every unfinished rollout (one per kind, named by `rollout/running/KIND`) and
        // every active version, as `allStageChanges` lists them from SQLite.
        var changes: [StoreChange] = []
        let running = try await reader.list("rollout/running/").map { try store.decode(EtcdStore.RunningRecord.self, $0).id }
        changes += running.sorted().map { .rollout($0) }
        let settingPrefix = store.key(EtcdStore.Keys.settings)
        for kv in try await reader.list(EtcdStore.Keys.settings) {
            let change = StoreChange.ofSetting(String(kv.keyString.dropFirst(settingPrefix.count)))
            if case .activeArtifact = change { changes.append(change) }
        }
        update = try await readStageChanges(changes, reader, into: update)
        return (update, update.scripts.count)
    }

    /// The script's active version with its source, its split (with the candidate's
    /// source) and its owner's cohort, or nil when it is deleted, unknown, or its
    /// owner is gone.
    private func activeScript(_ script: ScriptAddress, _ reader: Reader) async throws -> ActiveScript? {
        guard
            let head = try await reader.value(
                EtcdStore.Keys.script(script.customer, script.name), as: EtcdStore.ScriptHead.self),
            !head.deleted,
            let customer = try await reader.value(EtcdStore.Keys.customer(script.customer), as: EtcdStore.CustomerRecord.self)
        else { return nil }
        let source = try await store.loadText(head.sha256, reader: reader)
        var split: ScriptSplit?
        if let record = head.split, record.percent > 0 {
            let candidate = record.sha256 == head.sha256 ? source : try await store.loadText(record.sha256, reader: reader)
            split = head.servedSplit(source: candidate)
        }
        return ActiveScript(
            spec: ScriptSpec(
                customer: script.customer, name: script.name, version: head.activeVersion, source: source, split: split),
            cohort: customer.cohort, sha256: head.sha256, quarantined: head.quarantined)
    }

    /// What `ChangeFeedReader.readStageChanges` adds for `.rollout` and
    /// `.activeArtifact` changes: the rollout (running, or ended), the pool's active
    /// version, and the content of every artifact version these make a slot run.
    private func readStageChanges(
        _ changes: [StoreChange], _ reader: Reader, into update: ReplicaUpdate
    ) async throws -> ReplicaUpdate {
        var update = update
        var versions: Set<VersionKey> = []
        for change in changes {
            switch change {
            case .rollout(let id):
                guard let record = try await reader.value(EtcdStore.Keys.rollout(id), as: EtcdStore.RolloutRecordValue.self) else {
                    update.endedRollouts.append(id)
                    continue
                }
                if record.finished {
                    update.endedRollouts.append(id)
                } else {
                    let state = try await reader.get(EtcdStore.Keys.rolloutState(id)).map { Data($0.value) } ?? Data()
                    update.rollouts.removeAll { $0.kind == record.kind }
                    update.rollouts.append(ReplicaRollout(id: id, kind: record.kind, state: state))
                }
                versions.insert(VersionKey(kind: record.kind, version: record.version))
                versions.insert(VersionKey(kind: record.kind, version: record.fromVersion))
            case .activeArtifact(let kind, let pool):
                let key = SettingKey.activeVersion(kind, pool: pool)
                var version: Int?
                if let text = try await reader.value(EtcdStore.Keys.setting(key), as: EtcdStore.SettingRecord.self)?.value {
                    guard let number = Int(text) else {
                        throw StoreError.unreadableSetting(key, value: text, expected: "a version number")
                    }
                    version = number
                }
                update.activeVersions.removeAll { $0.kind == kind && $0.pool == pool }
                update.activeVersions.append(ReplicaActiveVersion(kind: kind, pool: pool, version: version))
                if let version { versions.insert(VersionKey(kind: kind, version: version)) }
            case .customer, .script, .setting:
                break
            }
        }
        for key in versions.sorted() where key.version >= 1 {
            guard
                let record = try await reader.value(
                    EtcdStore.Keys.artifact(key.kind, key.version), as: EtcdStore.VersionRecord.self)
            else { continue }
            let content = try await store.loadText(record.sha256, reader: reader)
            update.artifacts.append(ReplicaArtifact(kind: key.kind, version: key.version, content: content))
        }
        return update
    }

    /// `changes` without repeats, in the order of their first appearance: one etcd
    /// transaction writes several keys that name one row (a rollout's record and its
    /// state), where SQLite's feed records the row once.
    static func unique(_ changes: [StoreChange]) -> [StoreChange] {
        var seen: Set<StoreChange> = []
        return changes.filter { seen.insert($0).inserted }
    }
}

/// An artifact version, as a set member.
private struct VersionKey: Hashable, Comparable {
    var kind: ArtifactKind
    var version: Int

    static func < (lhs: Self, rhs: Self) -> Bool { (lhs.kind.rawValue, lhs.version) < (rhs.kind.rawValue, rhs.version) }
}
