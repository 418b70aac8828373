import Foundation
import Store
import Testing

@Suite struct RolloutStoreTests {
    private let state = Data(#"{"stage": 0, "baseline": {"requests": 120}}"#.utf8)

    @Test func createGetUpdate() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.putArtifact(kind: .rules, content: "{}", actor: "admin")

        let created = try store.createRollout(kind: .rules, version: 1, fromVersion: 0, status: "running", state: state, actor: "admin")
        #expect(created.id == 1)
        #expect(created.fromVersion == 0)
        #expect(!created.finished)
        #expect(try store.rollout(id: 1) == created)
        #expect(try store.runningRollout(kind: .rules) == created)
        #expect(try store.runningRollout(kind: .runtime) == nil)

        let newState = Data([0x7b, 0x7d, 0x00, 0xff])  // kept byte for byte, even if not JSON
        let paused = try store.updateRollout(id: 1, status: "paused", state: newState, finished: false, actor: "rollout")
        #expect(paused.status == "paused")
        #expect(paused.state == newState)
        #expect(paused.updatedAt > created.updatedAt)
        #expect(try store.rollout(id: 1) == paused)
        #expect(try store.runningRollout(kind: .rules)?.status == "paused")

        let done = try store.updateRollout(id: 1, status: "rolled-back", state: state, finished: true, actor: "rollout")
        #expect(done.finished)
        #expect(try store.runningRollout(kind: .rules) == nil)
        #expect(try store.rollout(id: 99) == nil)
        #expect(storeError { _ = try store.updateRollout(id: 99, status: "x", state: state, finished: true, actor: "r") }?.kind == .notFound)
    }

    @Test func oneUnfinishedRolloutPerKind() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.putArtifact(kind: .rules, content: "{}", actor: "admin")
        _ = try store.putArtifact(kind: .rules, content: "{ }", actor: "admin")
        _ = try store.putArtifact(kind: .runtime, content: "--", actor: "admin")

        let first = try store.createRollout(kind: .rules, version: 1, fromVersion: 0, status: "running", state: state, actor: "admin")
        let clash = storeError {
            _ = try store.createRollout(kind: .rules, version: 2, fromVersion: 1, status: "running", state: state, actor: "admin")
        }
        #expect(clash?.kind == .conflict)
        #expect(clash?.description.contains("rollout 1 of the rules artifact is still in progress") == true)

        // Another kind is independent.
        let runtime = try store.createRollout(kind: .runtime, version: 1, fromVersion: 0, status: "running", state: state, actor: "admin")
        #expect(runtime.id == 2)

        _ = try store.updateRollout(id: first.id, status: "succeeded", state: state, finished: true, actor: "rollout")
        let next = try store.createRollout(kind: .rules, version: 2, fromVersion: 1, status: "running", state: state, actor: "admin")
        #expect(next.id == 3)

        // Finished is final.
        let reopen = storeError { _ = try store.updateRollout(id: first.id, status: "running", state: state, finished: false, actor: "r") }
        #expect(reopen?.kind == .conflict)
        #expect(try store.rollout(id: first.id)?.status == "succeeded")

        #expect(try store.rollouts(limit: 10).map(\.id) == [3, 2, 1])
        #expect(try store.rollouts(limit: 2).map(\.id) == [3, 2])
    }

    @Test func theArtifactMustExist() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        let error = storeError {
            _ = try store.createRollout(kind: .binary, version: 1, fromVersion: 0, status: "running", state: state, actor: "admin")
        }
        #expect(error?.kind == .notFound)
        #expect(error?.description == "there is no binary artifact version 1")
        #expect(try store.rollouts(limit: 10).isEmpty)
    }
}
