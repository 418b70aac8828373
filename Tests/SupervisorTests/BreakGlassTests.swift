import BulkheadCore
import Foundation
import Rollout
import Store
import Supervisor
import Testing

/// Which version a break-glass rollback pins, and what it refuses: on a real store
/// file, with rollouts recorded the way the driver records them (the engine's state
/// as it ended), and the pins written to a real host replica (break glass is the
/// host's own; the control store is only read).
@Suite struct BreakGlassTests {
    /// A store in a directory of its own, removed at the end of the test.
    final class Scratch {
        let directory: String
        let store: SQLiteStore
        let replica: HostReplica

        init() throws {
            directory = NSTemporaryDirectory() + "bulkhead-breakglass-" + UUID().uuidString
            store = try SQLiteStore(path: directory + "/bulkhead.sqlite")
            replica = try HostReplica(path: directory + "/host.sqlite")
        }

        /// A break-glass rollback as the host agent makes it.
        @discardableResult
        func rollback(_ kind: ArtifactKind, to version: Int?, allowRejected: Bool = false) throws -> Int {
            try BreakGlass.rollback(
                kind: kind, to: version, allowRejected: allowRejected, history: try BreakGlass.History.read(store: store),
                replica: replica, content: { (try? self.store.artifact(kind: kind, version: $0))??.content }, actor: "test")
        }

        func status() throws -> BreakGlass.Status {
            try BreakGlass.status(replica: replica, history: try BreakGlass.History.read(store: store))
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        static let stages = [
            Stage(pool: "free", slots: [0], name: "free canary", isCanary: true, gate: .defaults),
            Stage(pool: "free", slots: [1], name: "free", gate: .defaults),
        ]

        enum End { case completed, rejected, aborted, running }

        /// Stores the next version of `kind` and a rollout of it that ended as `end`.
        @discardableResult
        func rollout(_ kind: ArtifactKind, ending end: End) throws -> Int {
            let artifact = try store.putArtifact(kind: kind, content: "-- \(UUID())", actor: "test")
            let previous = artifact.version - 1
            var machine = try RolloutMachine(
                kind: kind, targetVersion: artifact.version, previousVersion: previous, stages: Self.stages, now: 1000)
            _ = try machine.start(now: 1000, by: "test")
            switch end {
            case .completed:
                _ = try machine.promote(now: 1001, by: "test")
                _ = try machine.promote(now: 1002, by: "test")
            case .rejected:
                // A signature the baseline never had fails the canary at once.
                _ = machine.observe(
                    stage: StageSample(requests: 100, platformErrors: 100, signatures: ["runtime.lua: boom": 100]),
                    baseline: StageSample(requests: 100), now: 1001)
            case .aborted:
                _ = try machine.abort(now: 1001, by: "test")
            case .running:
                break
            }
            let record = try store.createRollout(
                kind: kind, version: artifact.version, fromVersion: previous, status: "running stage 0",
                state: try JSONEncoder().encode(machine), actor: "test")
            if machine.state.isFinished {
                let status: String
                switch machine.state {
                case .completed: status = "completed"
                case .rolledBack(let stage, _): status = "rolled back at stage \(stage)"
                default: status = "aborted"
                }
                _ = try store.updateRollout(
                    id: record.id, status: status, state: try JSONEncoder().encode(machine), finished: true, actor: "test")
            }
            return artifact.version
        }
    }

    @Test func withNoCompletedRolloutTheDefaultIsTheBuiltInVersion() throws {
        let scratch = try Scratch()
        try scratch.rollout(.runtime, ending: .rejected)
        try scratch.rollout(.runtime, ending: .aborted)
        let plan = try BreakGlass.plan(kind: .runtime, to: nil, allowRejected: false, store: scratch.store, running: [:])
        #expect(plan.version == 0, "never the rejected v1 nor the aborted v2: \(plan)")
        #expect(plan.why.contains("version 0"))
    }

    @Test func theDefaultIsTheNewestCompletedVersionNeverARejectedOrUnfinishedOne() throws {
        let scratch = try Scratch()
        #expect(try scratch.rollout(.runtime, ending: .rejected) == 1)
        #expect(try scratch.rollout(.runtime, ending: .completed) == 2)
        #expect(try scratch.rollout(.runtime, ending: .rejected) == 3)
        #expect(try scratch.rollout(.runtime, ending: .aborted) == 4)
        #expect(try scratch.rollout(.runtime, ending: .running) == 5)
        // Another kind's history does not count.
        try scratch.rollout(.rules, ending: .completed)
        try scratch.rollout(.rules, ending: .completed)
        try scratch.rollout(.rules, ending: .completed)
        let plan = try BreakGlass.plan(
            kind: .runtime, to: nil, allowRejected: false, store: scratch.store, running: ["free": [2, 5], "pro": [2]])
        #expect(plan.version == 2)
        #expect(plan.why.contains("rollout 2"))
        #expect(plan.aborts?.hasPrefix("5 ") == true, "the running rollout 5 would be aborted: \(plan)")
        #expect(plan.pools.map(\.pool) == ["free", "pro"])
        #expect(plan.pools.map(\.from) == [[2, 5], [2]])

        let pinned = try scratch.rollback(.runtime, to: nil)
        #expect(pinned == 2)
        #expect(try scratch.replica.overrides().pinnedVersion(of: .runtime) == 2)
        #expect(try scratch.replica.artifactContent(kind: .runtime, version: 2) != nil, "the pinned version's content is kept on the host")
        // The host writes only its replica: the driver, reading the pin, aborts rollout 5.
        #expect(try scratch.store.runningRollout(kind: .runtime)?.version == 5)
    }

    @Test func aRejectedVersionIsRefusedUnlessAllowedExplicitly() throws {
        let scratch = try Scratch()
        try scratch.rollout(.runtime, ending: .rejected)
        try scratch.rollout(.runtime, ending: .completed)
        #expect {
            try BreakGlass.plan(kind: .runtime, to: 1, allowRejected: false, store: scratch.store, running: [:])
        } throws: { error in
            let refusal = error as? ControlError
            return refusal?.kind == .rejectedVersion && refusal?.message.contains("free canary") == true
                && refusal?.message.contains("--allow-rejected") == true
        }
        #expect(throws: ControlError.self) {
            try scratch.rollback(.runtime, to: 1)
        }
        #expect(try scratch.replica.overrides().pins.isEmpty, "a refused rollback pins nothing")

        let allowed = try BreakGlass.plan(kind: .runtime, to: 1, allowRejected: true, store: scratch.store, running: [:])
        #expect(allowed.version == 1)
        #expect(allowed.warnings.contains { $0.contains("rejected by the gate of rollout 1") })
        // Any version that exists and no gate rejected, and the built-in one, are fine.
        #expect(try BreakGlass.plan(kind: .runtime, to: 0, allowRejected: false, store: scratch.store, running: [:]).version == 0)
        #expect(throws: ControlError.self) {
            try BreakGlass.plan(kind: .runtime, to: 9, allowRejected: false, store: scratch.store, running: [:])
        }
    }

    @Test func unpinKeepsThePinnedVersionRunningAndAnotherUnpinIsRefused() throws {
        let scratch = try Scratch()
        try scratch.rollout(.rules, ending: .completed)
        try scratch.rollout(.rules, ending: .completed)
        try scratch.store.setActiveVersion(2, of: .rules, inPool: "free", actor: "test")
        try scratch.rollback(.rules, to: 1)
        #expect(try scratch.status().pins == ["rules": 1])
        #expect(try BreakGlass.unpin(kind: .rules, replica: scratch.replica, pools: ["free"], actor: "test") == 1)
        #expect(try scratch.status().pins.isEmpty)
        // The host keeps the pinned version as the pool's active one in its replica.
        let active = try scratch.replica.contents().activeVersions
        #expect(active.contains(ReplicaActiveVersion(kind: .rules, pool: "free", version: 1)), "nothing changes when the pin goes: \(active)")
        #expect(try scratch.store.activeVersion(of: .rules, inPool: "free") == 2, "the control store is never written by break glass")
        #expect(throws: ControlError.self) {
            try BreakGlass.unpin(kind: .rules, replica: scratch.replica, pools: ["free"], actor: "test")
        }
    }

    @Test func aMissingStoreIsAnErrorNamingItAndNothingIsCreated() throws {
        let parent = NSTemporaryDirectory() + "bulkhead-breakglass-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: parent) }
        var configuration = SQLiteStoreConfiguration()
        configuration.createIfMissing = false
        for path in [parent + "/bulkhead.sqlite", parent + "/data/bulkhead.sqlite"] {
            #expect {
                _ = try SQLiteStore(path: path, configuration: configuration)
            } throws: { error in
                (error as? StoreError)?.kind == .notFound && "\(error)".contains(path)
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent).isEmpty)
    }

    @Test func withNoControlStoreTheRollbackChoosesFromTheReplica() throws {
        let scratch = try Scratch()
        var update = ReplicaUpdate(revision: 7, isFullCopy: true)
        update.activeVersions = [ReplicaActiveVersion(kind: .runtime, pool: "free", version: 3),
                                 ReplicaActiveVersion(kind: .runtime, pool: "pro", version: 2)]
        update.artifacts = [ReplicaArtifact(kind: .runtime, version: 2, content: "-- two"), ReplicaArtifact(kind: .runtime, version: 3, content: "-- three")]
        try scratch.replica.apply(update)
        let history = try BreakGlass.History.read(replica: scratch.replica, because: "the control store cannot be read (test)")
        let plan = try BreakGlass.plan(kind: .runtime, to: nil, allowRejected: false, history: history, running: ["free": [3]])
        #expect(plan.version == 3, "the newest active version the replica holds: \(plan)")
        #expect(plan.warnings.contains { $0.contains("cannot be read") }, "the plan says where it chose from")
        #expect(try BreakGlass.plan(kind: .runtime, to: 2, allowRejected: false, history: history, running: [:]).version == 2)
        #expect(throws: ControlError.self) {
            try BreakGlass.plan(kind: .runtime, to: 9, allowRejected: false, history: history, running: [:])
        }
    }

    @Test func aControlStoresFreezeAndPinsFromBeforeAreImportedOnceThenIgnored() throws {
        let scratch = try Scratch()
        try scratch.store.setSetting(SettingKey.frozen, to: "true", actor: "old")
        try scratch.store.setSetting(SettingKey.pinnedVersion(.rules), to: "4", actor: "old")
        #expect(try BreakGlass.importLegacy(from: scratch.store, into: scratch.replica))
        let overrides = try scratch.replica.overrides()
        #expect(overrides.isFrozen)
        #expect(overrides.pinnedVersion(of: .rules) == 4)
        let events = try scratch.replica.auditEvents(after: 0, limit: 100)
        #expect(events.contains { $0.action == .breakGlassImported && $0.detail.contains("\"pinned.rules\":4") }, "the import is audited")
        // Cleared on the host, it stays cleared: the old settings are not read again.
        try scratch.replica.setFrozen(false, actor: "test")
        try scratch.replica.setPin(.rules, version: nil, actor: "test")
        #expect(try BreakGlass.importLegacy(from: scratch.store, into: scratch.replica) == false)
        #expect(try scratch.replica.overrides() == HostOverrides())
    }
}
