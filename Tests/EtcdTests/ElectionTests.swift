import Etcd
import Foundation
import Testing

@Suite("etcd leader election", .serialized)
struct ElectionTests {
    /// Waits (up to `limit`) until `condition` holds; the time it took.
    func waitFor(_ limit: Duration = .seconds(20), _ condition: () -> Bool) async throws -> Duration {
        let start = ContinuousClock.now
        while !condition() {
            guard ContinuousClock.now - start < limit else { throw WaitTimeout() }
            try await Task.sleep(for: .milliseconds(20))
        }
        return ContinuousClock.now - start
    }

    struct WaitTimeout: Error {}

    /// A fenced write: puts `value` at `key` only while `fence` holds.
    func fencedPut(_ client: EtcdClient, _ fence: Compare, _ key: String, _ value: String) async throws -> Bool {
        try await client.txn(compare: [fence], success: [.put(key, value)]).succeeded
    }

    @Test("one candidate leads, the other follows it; when the leader resigns the other takes over")
    func oneLeaderThenHandover() async throws {
        try await withEtcd { _, client in
            let first = EtcdElection(client: client, key: "leader", candidate: "control-a", retryInterval: .milliseconds(100))
            let second = EtcdElection(client: client, key: "leader", candidate: "control-b", retryInterval: .milliseconds(100))
            first.start()
            _ = try await waitFor { first.isLeading }
            second.start()
            _ = try await waitFor { second.standing == .following(leader: "control-a") }
            #expect(first.isLeading)
            #expect(try await fencedPut(client, first.fence, "decision", "by a"))
            #expect(try await !fencedPut(client, second.fence, "decision", "by b"))

            await first.stop()
            let took = try await waitFor { second.isLeading }
            print("election: the follower led \(String(format: "%.2f", took.seconds)) s after the leader resigned")
            #expect(try await fencedPut(client, second.fence, "decision", "by b"))
            #expect(try await !fencedPut(client, first.fence, "decision", "by a again"))
            #expect(try await client.get("decision").first?.value == Array("by b".utf8))
            await second.stop()
        }
    }

    @Test("a leader whose lease is lost (as when it was paused past its TTL) has its fenced writes refused once another leads")
    func lostLeaseFencesTheOldLeader() async throws {
        try await withEtcd { _, client in
            let first = EtcdElection(client: client, key: "leader", candidate: "control-a", retryInterval: .milliseconds(100))
            let second = EtcdElection(client: client, key: "leader", candidate: "control-b", retryInterval: .milliseconds(100))
            first.start()
            _ = try await waitFor { first.isLeading }
            second.start()
            _ = try await waitFor { second.standing == .following(leader: "control-a") }
            // What a paused leader still holds when it resumes: the fence of its term.
            let stale = first.fence
            let lease = try #require(try await client.get("leader").first?.lease)
            try await client.revokeLease(lease)

            let took = try await waitFor { second.isLeading }
            print("election: a new leader \(String(format: "%.2f", took.seconds)) s after the old lease was lost")
            #expect(try await !fencedPut(client, stale, "decision", "by the old leader"))
            #expect(try await client.get("decision").first == nil)
            // The old leader notices, and follows (or campaigns again) without leading.
            _ = try await waitFor { !first.isLeading }
            #expect(try await fencedPut(client, second.fence, "decision", "by b"))
            await first.stop()
            await second.stop()
        }
    }
}
