#if canImport(Glibc)
import Glibc
#endif
import Etcd
import Foundation
import Testing

@Suite("etcd clusters: failover and leader loss", .serialized)
struct ClusterTests {
    @Test("status and member list describe a 3-member cluster")
    func statusAndMembers() async throws {
        try await withEtcd(size: 3) { cluster, client in
            print("3-member etcd cluster on loopback: every member saw a leader \(String(format: "%.2f", cluster.startSeconds)) s after start")
            let (_, members) = try await client.memberList()
            #expect(Set(members.map(\.name)) == ["m1", "m2", "m3"])
            #expect(Set(members.flatMap(\.clientURLs)) == Set(cluster.endpoints))
            var leaders = Set<UInt64>()
            for member in cluster.members {
                let status = try await client.status(of: URL(string: member.clientURL)!)
                #expect(status.version == "3.4.23" || status.version.hasPrefix("3."))
                #expect(status.dbSize > 0 && status.raftIndex > 0 && status.raftTerm > 0)
                #expect(members.contains { $0.id == status.header.memberID })
                leaders.insert(status.leader)
            }
            #expect(leaders.count == 1 && !leaders.contains(0))
        }
    }

    @Test("failover: the member the client talks to is killed (-9) and the next call still succeeds")
    func failover() async throws {
        try await withEtcd(size: 3) { cluster, client in
            // Talk to the leader, so that the kill also costs an election.
            let leader = try #require(try await cluster.leader())
            let leaderIndex = try #require(cluster.members.firstIndex { $0 === leader })
            let ordered = (0..<3).map { cluster.endpoints[(leaderIndex + $0) % 3] }
            // Generous for a loaded machine: the call may wait out a slow election.
            let pinned = try EtcdClient(endpoints: ordered, timeouts: .init(failover: .seconds(30)))
            _ = try await pinned.put("f/before", "1")
            #expect(pinned.currentEndpoint.port == leader.clientPort)

            leader.kill9()
            let start = ContinuousClock.now
            let put = try await pinned.put("f/after", "2")
            let failover = ContinuousClock.now - start
            let got = try await pinned.get("f/before")
            print("failover: leader killed -9; the next put answered after \(String(format: "%.0f", failover.seconds * 1000)) ms from \(pinned.currentEndpoint)")
            #expect(pinned.currentEndpoint.port != leader.clientPort)
            #expect(put.header.revision > 0 && got.first?.valueString == "1")
            #expect(failover < .seconds(30))

            await pinned.shutdown()
        }
    }

    @Test("require-leader: a watch on a member whose two peers stop fails within a bounded time, not hanging")
    func watchFailsWithoutLeader() async throws {
        try await withEtcd(size: 3) { cluster, _ in
            let watched = cluster.members[0]
            let client = try EtcdClient(endpoints: [watched.clientURL], timeouts: .init(failover: .seconds(1)))
            defer { Task { await client.shutdown() } }
            let (created, signalCreated) = AsyncStream<Void>.makeStream()
            let watcher = Task { () -> String in
                do {
                    for try await answer in client.watch("r/", prefix: true) {
                        if answer.created {
                            signalCreated.yield()
                            continue
                        }
                        if !answer.events.isEmpty { return "an event arrived" }
                    }
                    return "the watch ended without an error"
                } catch {
                    return "\(error)"
                }
            }
            for await _ in created { break }

            for member in cluster.members.dropFirst() { member.pause() }
            let start = ContinuousClock.now
            let outcome = await withTaskGroup(of: String.self) { group in
                group.addTask { await watcher.value }
                group.addTask {
                    try? await Task.sleep(for: .seconds(60))
                    return "still hanging after 60 s"
                }
                let first = await group.next() ?? ""
                watcher.cancel()
                group.cancelAll()
                return first
            }
            let elapsed = ContinuousClock.now - start
            print("require-leader watch: 2 of 3 members stopped; the watch failed after \(String(format: "%.2f", elapsed.seconds)) s: \(outcome)")
            #expect(outcome == EtcdError.noLeader.description)

            // A new watch and a write are refused at once, not left waiting.
            let refused = ContinuousClock.now
            await #expect(throws: EtcdError.noLeader) {
                for try await _ in client.watch("r/") {}
            }
            await #expect(throws: EtcdError.noLeader) { try await client.put("r/x", "1") }
            print("require-leader: a new watch and a put refused after \(String(format: "%.2f", (ContinuousClock.now - refused).seconds)) s")
            // Status still answers: the member is up, without a leader.
            let status = try await client.status()
            #expect(status.leader == 0)
            for member in cluster.members.dropFirst() { member.resume() }
        }
    }
}
