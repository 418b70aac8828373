import Etcd
import Foundation
import Testing

@Suite("etcd keys, values and transactions", .serialized)
struct KVTests {
    @Test("put, get and delete round-trip binary keys and values, with etcd's header and revisions")
    func roundTrip() async throws {
        try await withEtcd { _, client in
            let key: [UInt8] = [0, 1, 0xff, 0x0a, 0x22] + Array("/bin".utf8)
            let value = (0...255).map { UInt8($0) }
            let put = try await client.put(key, value)
            #expect(put.header.revision >= 2)
            #expect(put.header.clusterID != 0 && put.header.memberID != 0 && put.header.raftTerm != 0)
            #expect(put.prevKV == nil)

            let got = try await client.get(key)
            let kv = try #require(got.first)
            #expect(kv.key == key)
            #expect(kv.value == value)
            #expect(kv.createRevision == put.header.revision)
            #expect(kv.modRevision == put.header.revision)
            #expect(kv.version == 1)
            #expect(kv.lease == 0)
            #expect(got.count == 1)
            #expect(got.header.revision == put.header.revision)

            let again = try await client.put(key, "second", prevKV: true)
            #expect(again.prevKV?.value == value)
            #expect(again.header.revision == put.header.revision + 1)
            let second = try #require(try await client.get(key).first)
            #expect(second.version == 2 && second.valueString == "second" && second.createRevision == put.header.revision)

            // An empty value is a value (the gateway leaves it out of the JSON).
            _ = try await client.put("empty", "")
            let empty = try #require(try await client.get("empty").first)
            #expect(empty.value.isEmpty && empty.version == 1)

            let missing = try await client.get("no such key")
            #expect(missing.first == nil && missing.count == 0 && missing.header.revision == again.header.revision + 1)

            let deleted = try await client.delete(key, prevKV: true)
            #expect(deleted.deleted == 1)
            #expect(deleted.prevKVs.first?.valueString == "second")
            #expect(try await client.get(key).first == nil)
            #expect(try await client.delete(key).deleted == 0)

            // The old value is still there at its revision.
            #expect(try await client.get(key, revision: put.header.revision).first?.value == value)
            await #expect(throws: EtcdError.futureRevision) { try await client.get(key, revision: 1_000_000) }

            var latencies: [Double] = []
            for index in 0..<200 {
                let start = ContinuousClock.now
                _ = try await client.put("latency/\(index)", "x")
                latencies.append((ContinuousClock.now - start).seconds * 1000)
            }
            print("etcd put latency (single member, tmpfs): median \(String(format: "%.2f", median(latencies))) ms over 200 puts")
        }
    }

    @Test("a 1.4 MiB value round-trips; past etcd's 1.5 MiB request limit the put fails as requestTooLarge")
    func largeValues() async throws {
        try await withEtcd { _, client in
            var generator = SystemRandomNumberGenerator()
            let big = (0..<(1_400 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let start = ContinuousClock.now
            _ = try await client.put("big", big)
            let read = try #require(try await client.get("big").first)
            print("1.4 MiB value: put + get in \(String(format: "%.0f", (ContinuousClock.now - start).seconds * 1000)) ms")
            #expect(read.value == big)

            for size in [1_600 * 1024, 2_200 * 1024] {
                let tooBig = [UInt8](repeating: 7, count: size)
                do {
                    _ = try await client.put("too-big", tooBig)
                    Issue.record("a \(size)-byte put was accepted")
                } catch {
                    guard case .requestTooLarge(let message)? = error as? EtcdError else {
                        Issue.record("a \(size)-byte put failed as \(error), not requestTooLarge")
                        continue
                    }
                    print("\(size)-byte put: \(error) [etcd: \(message)]")
                }
            }
            #expect(try await client.get("too-big").first == nil)
        }
    }

    @Test("rangeAll reads 2,500 keys in pages at one revision while another task keeps writing")
    func rangeAllAtOneRevision() async throws {
        try await withEtcd { _, client in
            // 2,500 keys, 100 per transaction (etcd allows 128 operations in one).
            for batch in 0..<25 {
                let ops = (0..<100).map { TxnOp.put("snap/\(String(format: "%05d", batch * 100 + $0))", "v0-\(batch * 100 + $0)") }
                let answer = try await client.txn(compare: [], success: ops)
                #expect(answer.succeeded)
            }
            _ = try await client.put("snaq/outside", "not in the prefix")

            // A writer that overwrites and adds keys under the prefix until told to stop.
            let (started, signalStarted) = AsyncStream<Void>.makeStream()
            let writer = Task {
                var written = 0
                while !Task.isCancelled {
                    do {
                        _ = try await client.put("snap/\(String(format: "%05d", written % 2_500))", "v1-\(written)")
                        _ = try await client.put("snap/new-\(written)", "added")
                    } catch {
                        break
                    }
                    written += 1
                    if written == 10 { signalStarted.yield() }
                }
                return written
            }
            for await _ in started { break }
            let start = ContinuousClock.now
            let all = try await client.rangeAll(prefix: "snap/", pageSize: 100)
            let elapsed = ContinuousClock.now - start
            // Let the writer go on a little past the last page, then stop it.
            try await Task.sleep(for: .milliseconds(50))
            writer.cancel()
            let written = await writer.value

            // The same prefix read in one call at the snapshot's revision.
            let snapshot = try await client.range(prefix: "snap/", revision: all.header.revision)
            print("rangeAll: \(all.kvs.count) keys in pages of 100 at revision \(all.header.revision) in \(String(format: "%.0f", elapsed.seconds * 1000)) ms while a writer made \(written) × 2 puts")
            #expect(written > 10)
            #expect(all.kvs.count >= 2_500)
            #expect(all.kvs == snapshot.kvs)
            #expect(all.kvs.allSatisfy { $0.modRevision <= all.header.revision })
            #expect(all.kvs.allSatisfy { $0.keyString.hasPrefix("snap/") })
            #expect(Set(all.kvs.map(\.key)).count == all.kvs.count)
            let now = try await client.range(prefix: "snap/", countOnly: true)
            #expect(now.count > all.kvs.count)
        }
    }

    @Test("compare-and-set as a dense counter: 8 tasks × 25 increments give 1…200, no gap, no repeat")
    func denseCounter() async throws {
        try await withEtcd { _, client in
            let start = ContinuousClock.now
            let results = try await withThrowingTaskGroup(of: ([Int64], Int).self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        var taken: [Int64] = []
                        var conflicts = 0
                        while taken.count < 25 {
                            let current = try await client.get("counter").first
                            let value = current.map { Int64($0.valueString) ?? -1 } ?? 0
                            let modRevision = current?.modRevision ?? 0
                            let next = value + 1
                            let answer = try await client.txn(
                                compare: [.modRevision("counter", .equal, modRevision)],
                                success: [.put("counter", String(next)), .put("counter-log/\(next)", "taken")],
                                failure: [.get("counter")])
                            if answer.succeeded {
                                taken.append(next)
                            } else {
                                conflicts += 1
                                #expect(answer.responses.first?.range?.first != nil)
                            }
                        }
                        return (taken, conflicts)
                    }
                }
                var all: [([Int64], Int)] = []
                for try await result in group { all.append(result) }
                return all
            }
            let values = results.flatMap(\.0).sorted()
            let conflicts = results.map(\.1).reduce(0, +)
            print("dense counter: 200 increments by 8 tasks in \(String(format: "%.0f", (ContinuousClock.now - start).seconds * 1000)) ms, \(conflicts) lost compares retried")
            #expect(values == Array(1...200))
            #expect(try await client.get("counter").first?.valueString == "200")
            #expect(try await client.range(prefix: "counter-log/", countOnly: true).count == 200)
        }
    }

    @Test("txn compares each target with each operator; put, delete and range answers come back in order")
    func txnCompares() async throws {
        try await withEtcd { _, client in
            let lease = try await client.grantLease(ttl: 60)
            let first = try await client.put("t/a", "apple", lease: lease.id)
            _ = try await client.put("t/a", "apricot", lease: lease.id)
            let a = try #require(try await client.get("t/a").first)
            #expect(a.version == 2 && a.createRevision == first.header.revision && a.lease == lease.id)

            let holds: @Sendable (Compare) async throws -> Bool = { compare in
                let answer = try await client.txn(compare: [compare], success: [])
                return answer.succeeded
            }
            #expect(try await holds(.version("t/a", .equal, 2)))
            #expect(try await holds(.version("t/a", .greater, 1)))
            #expect(try await holds(.version("t/a", .less, 3)))
            #expect(try await holds(.version("t/a", .notEqual, 1)))
            #expect(!(try await holds(.version("t/a", .equal, 1))))
            #expect(try await holds(.version("t/missing", .equal, 0)))
            #expect(try await holds(.createRevision("t/a", .equal, first.header.revision)))
            #expect(try await holds(.modRevision("t/a", .equal, a.modRevision)))
            #expect(try await holds(.modRevision("t/a", .greater, first.header.revision)))
            #expect(try await holds(.value("t/a", .equal, "apricot")))
            #expect(try await holds(.value("t/a", .greater, "apple")))
            #expect(try await holds(.value("t/a", .less, "banana")))
            #expect(!(try await holds(.value("t/a", .notEqual, "apricot"))))
            #expect(try await holds(.lease("t/a", .equal, lease.id)))
            #expect(try await holds(.lease("t/missing", .equal, 0)))
            #expect(!(try await holds(.lease("t/a", .equal, 0))))

            _ = try await client.put("t/b", "banana")
            let answer = try await client.txn(
                compare: [.value("t/a", .equal, "apricot"), .version("t/c", .equal, 0)],
                success: [.put("t/c", "cherry"), .delete("t/b", prevKV: true), .range(prefix: "t/")],
                failure: [.get("t/a")])
            #expect(answer.succeeded)
            #expect(answer.responses.count == 3)
            guard answer.responses.count == 3 else { return }
            guard case .put = answer.responses[0] else { Issue.record("first answer \(answer.responses[0])"); return }
            guard case .delete(let deleted) = answer.responses[1] else { Issue.record("second answer \(answer.responses[1])"); return }
            #expect(deleted.deleted == 1 && deleted.prevKVs.first?.valueString == "banana")
            let read = try #require(answer.responses[2].range)
            #expect(read.kvs.map(\.keyString) == ["t/a", "t/c"])
            #expect(read.kvs.allSatisfy { $0.modRevision <= answer.header.revision })

            let failed = try await client.txn(compare: [.version("t/c", .equal, 0)], success: [.delete("t/a")], failure: [.get("t/c")])
            #expect(!failed.succeeded)
            #expect(failed.responses.first?.range?.first?.valueString == "cherry")
            #expect(try await client.get("t/a").first != nil)

            // etcd refuses a transaction that writes one key twice.
            do {
                _ = try await client.txn(compare: [], success: [.put("t/x", "1"), .put("t/x", "2")])
                Issue.record("a txn writing a key twice was accepted")
            } catch {
                guard case .server(let code, let message)? = error as? EtcdError else { Issue.record("\(error)"); return }
                #expect(code == 3 && message.contains("duplicate key"))
            }

            let prefixDelete = try await client.delete(prefix: "t/")
            #expect(prefixDelete.deleted == 2)
            #expect(try await client.range(prefix: "t/").kvs.isEmpty)
        }
    }

    @Test("a read at a compacted revision fails as compacted; compaction keeps the current keys")
    func compaction() async throws {
        try await withEtcd { _, client in
            let first = try await client.put("c", "1")
            _ = try await client.put("c", "2")
            let third = try await client.put("c", "3")
            try await client.compact(revision: third.header.revision, physical: true)
            await #expect(throws: EtcdError.compacted(compactRevision: nil)) {
                try await client.get("c", revision: first.header.revision)
            }
            #expect(try await client.get("c").first?.valueString == "3")
            #expect(try await client.get("c", revision: third.header.revision).first?.valueString == "3")
        }
    }

    @Test("no member answers: unavailable, naming each endpoint and its reason")
    func unavailable() async throws {
        let ports = [try freePort(), try freePort()]
        let client = try EtcdClient(
            endpoints: ports.map { "http://127.0.0.1:\($0)" }, timeouts: .init(connect: .seconds(1), request: .seconds(1), failover: .milliseconds(300)))
        let start = ContinuousClock.now
        do {
            _ = try await client.get("k")
            Issue.record("a get with no etcd answered")
        } catch {
            guard case .unavailable(let failures) = error else {
                Issue.record("\(error)")
                await client.shutdown()
                return
            }
            print("no etcd: \(error) after \(String(format: "%.0f", (ContinuousClock.now - start).seconds * 1000)) ms")
            #expect(failures.map(\.endpoint) == ports.map { "http://127.0.0.1:\($0)" })
            #expect(failures.allSatisfy { !$0.reason.isEmpty })
        }
        await client.shutdown()
        await #expect(throws: EtcdError.shutDown) { try await client.get("k") }
        #expect(throws: EtcdError.self) { try EtcdClient(endpoints: ["ftp://x"]) }
    }
}
