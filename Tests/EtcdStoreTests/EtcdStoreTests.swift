import BulkheadCore
import Dispatch
import Etcd
import EtcdStore
import Foundation
import Store
import Synchronization
import Testing

/// What only the etcd store has: chunked contents by hash, several control processes
/// writing at once, garbage collection, compaction, an unreachable cluster.
@Suite("EtcdStore against a real etcd", .serialized, .etcdServer)
struct EtcdStoreTests {
    /// A client of the suite's etcd and a store under a fresh prefix.
    private func makeStore(
        prefix: String = uniquePrefix(), configuration: EtcdStoreConfiguration = .init()
    ) throws -> (EtcdClient, EtcdStore) {
        let client = try EtcdClient(endpoints: try SharedEtcd.current().endpoints)
        return (client, try EtcdStore(client: client, prefix: prefix, configuration: configuration))
    }

    /// An etcd of its own (to be stopped or killed under the store), short client
    /// timeouts, and a store on it with customer `acme`.
    private func storeOnItsOwnEtcd() async throws -> (EtcdCluster, EtcdClient, EtcdStore) {
        let cluster = try await EtcdCluster.start()
        do {
            let timeouts = EtcdConfiguration.Timeouts(connect: .seconds(1), request: .seconds(2), failover: .seconds(3))
            let client = try EtcdClient(endpoints: cluster.endpoints, timeouts: timeouts)
            let store = try EtcdStore(client: client, prefix: uniquePrefix())
            try await onStoreThread {
                _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            }
            return (cluster, client, store)
        } catch {
            cluster.stop()
            throw error
        }
    }

    /// The keys under `prefix` + `relative`, counted.
    private func count(_ client: EtcdClient, _ prefix: String, _ relative: String) async throws -> Int {
        Int(try await client.range(prefix: prefix + relative, countOnly: true).count)
    }

    @Test("the store's latest revision is etcd's: a write raises it to the write's revision")
    func latestRevisionIsEtcds() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let before = try await onStoreThread { try store.latestRevision() }
        _ = try await onStoreThread { try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli") }
        let after = try await onStoreThread { try store.latestRevision() }
        let written = try #require(try await client.get(store.prefix + "customer/acme").first)
        #expect(after > before)
        #expect(after == Int(written.modRevision))
    }

    @Test("a driver's store fenced by its leadership: writes land while it leads, none once another leads")
    func fencedWritesFollowLeadership() async throws {
        let prefix = uniquePrefix()
        let (client, _) = try makeStore(prefix: prefix)
        defer { Task { await client.shutdown() } }
        let first = EtcdElection(client: client, key: prefix + "leader", candidate: "control-a", retryInterval: .milliseconds(100))
        let second = EtcdElection(client: client, key: prefix + "leader", candidate: "control-b", retryInterval: .milliseconds(100))
        var fenced = EtcdStoreConfiguration()
        fenced.fence = { first.fence }
        let driver = try EtcdStore(client: client, prefix: prefix, configuration: fenced)
        first.start()
        let deadline = ContinuousClock.now + .seconds(20)
        while !first.isLeading, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(first.isLeading)
        second.start()
        let record = try await onStoreThread {
            _ = try driver.putArtifact(kind: .runtime, content: "return {}", actor: "cli")
            return try driver.createRollout(kind: .runtime, version: 1, fromVersion: 0, status: "running", state: Data("s1".utf8), actor: "driver")
        }

        // The leader's lease is lost (as when it was paused past its TTL) and the
        // other candidate wins: the first one's writes no longer land.
        let lease = try #require(try await client.get(prefix + "leader").first?.lease)
        _ = try await client.revokeLease(lease)
        while !second.isLeading, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(second.isLeading)
        let refused = try await onStoreThread { () -> StoreError? in
            do {
                _ = try driver.updateRollout(id: record.id, status: "paused", state: Data("s2".utf8), finished: false, actor: "driver")
                return nil
            } catch {
                return error as? StoreError
            }
        }
        print("fenced write after losing the lead: \(refused.map { "\($0)" } ?? "accepted")")
        #expect(refused?.description.contains("no longer leads") == true)
        let stored = try await onStoreThread { try driver.rollout(id: record.id) }
        #expect(stored?.status == "running" && stored?.state == Data("s1".utf8))
        await first.stop()
        await second.stop()
    }

    @Test("a 3 MiB source goes in chunks below etcd's request limit and reads back whole")
    func chunkedSourceRoundTrip() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        // Lua-ish text with multi-byte characters, 3 MiB and a bit: four chunks of 1 MiB.
        let line = "-- h\u{e9}llo \u{2603} fleet line padding padding padding padding\n"
        var source = String(repeating: line, count: (3 * 1024 * 1024) / line.utf8.count + 1)
        source += "function handle(req) return 'ok' end\n"
        let text = source
        let (put, uploadMilliseconds) = try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            let start = ContinuousClock.now
            let put = try store.putScriptVersion(customer: "acme", name: "big", source: text, actor: "customer:acme")
            return (put, milliseconds(since: start))
        }
        #expect(put.size == source.utf8.count && put.size > 3 * 1024 * 1024)
        let chunks = try await count(client, store.prefix, "blob/\(put.sha256)/c/")
        #expect(chunks == (put.size + 1024 * 1024 - 1) / (1024 * 1024))
        let (read, active, readMilliseconds) = try await onStoreThread {
            let start = ContinuousClock.now
            let read = try store.scriptSource(customer: "acme", name: "big", version: nil)
            let elapsed = milliseconds(since: start)
            return (read, try store.activeScripts(), elapsed)
        }
        #expect(read.source == source)
        #expect(read.version == put)
        #expect(active.first?.spec.source == source && active.first?.sha256 == put.sha256)
        print("etcd store: \(put.size) bytes in \(chunks) chunks: upload \(String(format: "%.0f", uploadMilliseconds)) ms, read \(String(format: "%.0f", readMilliseconds)) ms")
    }

    @Test("100 scripts uploaded one by one, then the workers' listing of them all (numbers printed)")
    func uploadLatencyAndActiveScripts() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let (latencies, listMilliseconds, active) = try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            var latencies: [Double] = []
            for index in 0..<100 {
                let start = ContinuousClock.now
                _ = try store.putScriptVersion(
                    customer: "acme", name: "s\(index)", source: "function handle(req) return '\(index)' end\n", actor: "c")
                latencies.append(milliseconds(since: start))
            }
            let start = ContinuousClock.now
            let active = try store.activeScripts()
            return (latencies, milliseconds(since: start), active)
        }
        #expect(active.count == 100)
        #expect(active.allSatisfy { $0.spec.source == "function handle(req) return '\($0.spec.name.dropFirst())' end\n" })
        print(
            "etcd store: upload latency (one store, no contention) median \(String(format: "%.1f", median(latencies))) ms, "
                + "max \(String(format: "%.1f", latencies.max() ?? 0)) ms over 100; activeScripts of 100 in "
                + "\(String(format: "%.0f", listMilliseconds)) ms")
    }

    @Test("two control processes upload one script 100 times each at once: versions 1…200, audit ids dense")
    func twoStoresRaceOnOneScript() async throws {
        let prefix = uniquePrefix()
        let (clientA, storeA) = try makeStore(prefix: prefix)
        let (clientB, storeB) = try makeStore(prefix: prefix)
        defer { Task { await clientA.shutdown(); await clientB.shutdown() } }
        final class Results: Sendable {
            let versions = Mutex<[Int]>([])
            let latencies = Mutex<[Double]>([])
            let errors = Mutex<[String]>([])
        }
        let results = Results()
        let threadsPerStore = 10
        let uploadsPerThread = 10
        let seconds = try await onStoreThread {
            _ = try storeA.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            let group = DispatchGroup()
            let start = ContinuousClock.now
            for (tag, store) in [("a", storeA), ("b", storeB)] {
                for thread in 0..<threadsPerStore {
                    group.enter()
                    Thread.detachNewThread {
                        defer { group.leave() }
                        for upload in 0..<uploadsPerThread {
                            let began = ContinuousClock.now
                            do {
                                let version = try store.putScriptVersion(
                                    customer: "acme", name: "hot", source: "-- \(tag) \(thread) \(upload)\n", actor: "customer:acme")
                                results.versions.withLock { $0.append(version.version) }
                                results.latencies.withLock { $0.append(milliseconds(since: began)) }
                            } catch {
                                results.errors.withLock { $0.append("\(error)") }
                            }
                        }
                    }
                }
            }
            group.wait()
            return (ContinuousClock.now - start).seconds
        }
        let errors = results.errors.withLock { $0 }
        #expect(errors.isEmpty, "\(errors.prefix(3))")
        let versions = results.versions.withLock { $0 }.sorted()
        #expect(versions == Array(1...200))
        let (listed, events, head) = try await onStoreThread {
            (
                try storeB.scriptVersions(customer: "acme", name: "hot"), try storeA.auditEvents(after: 0, limit: 1000),
                try storeA.script(customer: "acme", name: "hot")
            )
        }
        #expect(listed.map(\.version) == Array(1...200))
        #expect(Set(listed.map(\.sha256)).count == 200)
        #expect(head?.activeVersion == 200 && head?.latestVersion == 200)
        #expect(events.map(\.id) == Array(1...201))
        #expect(events.filter { $0.action == .scriptPut }.count == 200)
        let latencies = results.latencies.withLock { $0 }
        print(
            "etcd store: 200 uploads from 2 stores x \(threadsPerStore) threads in \(String(format: "%.2f", seconds)) s; "
                + "upload latency median \(String(format: "%.1f", median(latencies))) ms, max \(String(format: "%.1f", latencies.max() ?? 0)) ms; "
                + "transactions retried after a lost race: \(storeA.retriedWrites) + \(storeB.retriedWrites)")
    }

    @Test("past its bound of attempts a write fails as contended, changing nothing; numbers stay dense")
    func contentionBound() async throws {
        var configuration = EtcdStoreConfiguration()
        configuration.maximumAttempts = 1
        let prefix = uniquePrefix()
        let (clientA, storeA) = try makeStore(prefix: prefix, configuration: configuration)
        let (clientB, storeB) = try makeStore(prefix: prefix, configuration: configuration)
        defer { Task { await clientA.shutdown(); await clientB.shutdown() } }
        final class Results: Sendable {
            let versions = Mutex<[Int]>([])
            let errors = Mutex<[StoreError]>([])
        }
        let results = Results()
        try await onStoreThread {
            _ = try storeA.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            let group = DispatchGroup()
            for (tag, store) in [("a", storeA), ("b", storeB)] {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    for upload in 0..<30 {
                        do {
                            let version = try store.putScriptVersion(customer: "acme", name: "hot", source: "-- \(tag) \(upload)", actor: "c")
                            results.versions.withLock { $0.append(version.version) }
                        } catch let error as StoreError {
                            results.errors.withLock { $0.append(error) }
                        } catch {
                            Issue.record("not a StoreError: \(error)")
                        }
                    }
                }
            }
            group.wait()
        }
        let versions = results.versions.withLock { $0 }.sorted()
        let errors = results.errors.withLock { $0 }
        #expect(versions.count + errors.count == 60)
        #expect(versions == Array(1...versions.count))
        #expect(errors.allSatisfy { $0.kind == .unavailable && $0.description.contains("in each of 1 attempts, another writer changed what it read") })
        let events = try await onStoreThread { try storeA.auditEvents(after: 0, limit: 1000) }
        #expect(events.map(\.id) == Array(1...(versions.count + 1)))
        print("etcd store: one attempt per write, 2 stores x 30 uploads: \(versions.count) stored, \(errors.count) refused as contended"
            + (errors.first.map { ": \($0)" } ?? ""))
    }

    @Test("garbage collection running beside uploads never removes what a version refers to")
    func garbageCollectionBesideUploads() async throws {
        var configuration = EtcdStoreConfiguration()
        configuration.chunkBytes = 1024  // several chunks per source: more to race on
        let prefix = uniquePrefix()
        let (clientA, uploader) = try makeStore(prefix: prefix, configuration: configuration)
        let (clientB, collector) = try makeStore(prefix: prefix, configuration: configuration)
        defer { Task { await clientA.shutdown(); await clientB.shutdown() } }
        let reports = Mutex<[EtcdGarbageReport]>([])
        let sources = try await onStoreThread {
            _ = try uploader.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            let done = Atomic<Bool>(false)
            let group = DispatchGroup()
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while !done.load(ordering: .relaxed) {
                    if let report = try? collector.collectGarbage() { reports.withLock { $0.append(report) } }
                }
            }
            var written: [String] = []
            for round in 0..<40 {
                // Each source also re-uploads an earlier one: a known blob referenced again.
                let source = String(repeating: "-- round \(round)\n", count: 300)
                _ = try uploader.putScriptVersion(customer: "acme", name: "s\(round % 4)", source: source, actor: "c")
                written.append(source)
            }
            done.store(true, ordering: .relaxed)
            group.wait()
            return written
        }
        let read = try await onStoreThread {
            try (0..<40).map { round in
                try uploader.scriptSource(customer: "acme", name: "s\(round % 4)", version: round / 4 + 1).source
            }
        }
        #expect(read == sources)
        let runs = reports.withLock { $0 }
        #expect(!runs.isEmpty)
        print("etcd store: \(runs.count) garbage collections beside 40 uploads; every version reads back; removed in all: \(runs.map(\.removedBlobs).reduce(0, +)) blobs")
    }

    @Test("a source shared by two scripts and an artifact is stored once")
    func sharedContentIsStoredOnce() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        let source = "function handle(req) return 'same' end\n"
        let (one, two, artifact) = try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            _ = try store.addCustomer(name: "beta", cohort: "free", tokenHash: hash("beta"), actor: "cli")
            let one = try store.putScriptVersion(customer: "acme", name: "one", source: source, actor: "c")
            let two = try store.putScriptVersion(customer: "beta", name: "two", source: source, actor: "c")
            _ = try store.putScriptVersion(customer: "acme", name: "one", source: source, actor: "c")
            let artifact = try store.putArtifact(kind: .runtime, content: source, actor: "admin")
            // The real clock's times read back exactly as the writes returned them.
            #expect(try store.scriptVersions(customer: "acme", name: "one").first == one)
            #expect(try store.artifacts(kind: .runtime) == [artifact])
            return (one, two, artifact)
        }
        #expect(one.sha256 == two.sha256 && two.sha256 == artifact.sha256)
        #expect(try await count(client, store.prefix, "blob/") == 2)  // one meta, one chunk
        let sources = try await onStoreThread {
            _ = try store.putScriptVersion(customer: "beta", name: "two", source: source + "-- changed\n", actor: "c")
            return try store.activeScripts().map(\.spec.source)
        }
        #expect(sources == [source, source + "-- changed\n"])
        #expect(try await count(client, store.prefix, "blob/") == 4)
    }

    @Test("garbage collection removes only contents no version refers to")
    func garbageCollection() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 1", actor: "c")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 2", actor: "c")
            _ = try store.putArtifact(kind: .rules, content: "{}", actor: "admin")
        }
        // Left by uploads that failed: chunks whose transaction never came (no meta),
        // and a whole blob no version refers to.
        let orphan = SHA256Hasher.hex("orphan")
        _ = try await client.put(store.prefix + "blob/\(orphan)/c/00000", "orphan")
        let unreferenced = SHA256Hasher.hex("unreferenced")
        _ = try await client.put(store.prefix + "blob/\(unreferenced)/c/00000", "unreferenced")
        _ = try await client.put(
            store.prefix + "blob/\(unreferenced)/meta",
            #"{"chunkBytes":1048576,"chunks":1,"sha256":"\#(unreferenced)","size":12}"#)
        #expect(try await count(client, store.prefix, "blob/") == 9)

        let (report, second, sources) = try await onStoreThread {
            let report = try store.collectGarbage()
            let second = try store.collectGarbage()
            let sources = try [1, 2].map { try store.scriptSource(customer: "acme", name: "hello", version: $0).source }
            return (report, second, sources)
        }
        #expect(report == EtcdGarbageReport(removedBlobs: 2, removedKeys: 3, keptBlobs: 3))
        #expect(second == EtcdGarbageReport(removedBlobs: 0, removedKeys: 0, keptBlobs: 3))
        #expect(try await count(client, store.prefix, "blob/") == 6)
        #expect(sources == ["-- 1", "-- 2"])
        #expect(try await onStoreThread { try store.latestArtifact(kind: .rules)?.content } == "{}")
        print("etcd store: garbage collection \(report)")
    }

    @Test("compaction drops old revisions; the store reads and writes on")
    func compaction() async throws {
        let (client, store) = try makeStore()
        defer { Task { await client.shutdown() } }
        try await onStoreThread {
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            for round in 1...5 {
                _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- \(round)", actor: "c")
            }
        }
        let before = try await client.get(store.prefix + "audit/next").header.revision
        let (compacted, again) = try await onStoreThread {
            (try store.compact(keepingRevisions: 0), try store.compact(keepingRevisions: 0))
        }
        #expect(compacted == before)
        #expect(again == nil)
        await #expect(throws: EtcdError.compacted(compactRevision: nil)) {
            try await client.get(store.prefix + "audit/next", revision: before - 1)
        }
        let (source, version) = try await onStoreThread {
            (
                try store.scriptSource(customer: "acme", name: "hello", version: 3).source,
                try store.putScriptVersion(customer: "acme", name: "hello", source: "-- 6", actor: "c").version
            )
        }
        #expect(source == "-- 3" && version == 6)
        #expect(try await onStoreThread { try store.compact(keepingRevisions: 1_000_000) } == nil)
        print("etcd store: compacted to revision \(compacted ?? 0)")
    }

    @Test("3 members, the leader killed during two stores' uploads: what is stored stays dense and unique, and writes resume")
    func leaderKilledDuringUploads() async throws {
        let cluster = try await EtcdCluster.start(size: 3)
        defer { cluster.stop() }
        let timeouts = EtcdConfiguration.Timeouts(connect: .seconds(1), request: .seconds(3), failover: .seconds(10))
        let clientA = try EtcdClient(endpoints: cluster.endpoints, timeouts: timeouts)
        let clientB = try EtcdClient(endpoints: Array(cluster.endpoints.reversed()), timeouts: timeouts)
        defer { Task { await clientA.shutdown(); await clientB.shutdown() } }
        let prefix = uniquePrefix()
        let storeA = try EtcdStore(client: clientA, prefix: prefix)
        let storeB = try EtcdStore(client: clientB, prefix: prefix)
        final class Results: Sendable {
            let versions = Mutex<[Int]>([])
            let errors = Mutex<[StoreError]>([])
        }
        let results = Results()
        let leader = try #require(try await cluster.leader())
        let killed = try await onStoreThread {
            _ = try storeA.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            let group = DispatchGroup()
            for (tag, store) in [("a", storeA), ("b", storeB)] {
                for thread in 0..<4 {
                    group.enter()
                    Thread.detachNewThread {
                        defer { group.leave() }
                        for upload in 0..<15 {
                            do {
                                let version = try store.putScriptVersion(
                                    customer: "acme", name: "hot", source: "-- \(tag) \(thread) \(upload)", actor: "c")
                                results.versions.withLock { $0.append(version.version) }
                            } catch let error as StoreError {
                                results.errors.withLock { $0.append(error) }
                            } catch {
                                Issue.record("not a StoreError: \(error)")
                            }
                        }
                    }
                }
            }
            // Kill the leader once some uploads are in.
            while results.versions.withLock({ $0.count }) < 20 { usleep(5_000) }
            let start = ContinuousClock.now
            leader.kill9()
            group.wait()
            return milliseconds(since: start)
        }
        let acknowledged = results.versions.withLock { $0 }
        let errors = results.errors.withLock { $0 }
        #expect(Set(acknowledged).count == acknowledged.count)
        // A failed upload is unreachable (its answer lost: it may have landed) or, past
        // the bound, contended; never another kind.
        #expect(errors.allSatisfy { $0.kind == .unreachable || $0.kind == .unavailable })
        let (stored, events, after) = try await onStoreThread {
            (
                try storeA.scriptVersions(customer: "acme", name: "hot").map(\.version),
                try storeB.auditEvents(after: 0, limit: 1000),
                try storeB.putScriptVersion(customer: "acme", name: "hot", source: "-- after", actor: "c").version
            )
        }
        #expect(stored == Array(1...stored.count))
        #expect(Set(acknowledged).isSubset(of: Set(stored)))
        #expect(events.map(\.id) == Array(1...events.count))
        #expect(events.filter { $0.action == .scriptPut }.count == stored.count)
        #expect(after == stored.count + 1)
        print(
            "etcd store: leader \(leader.name) killed during 120 uploads: \(acknowledged.count) acknowledged, \(errors.count) failed "
                + "(\(errors.filter { $0.kind == .unreachable }.count) unreachable), \(stored.count) stored (dense); "
                + "the rest finished \(String(format: "%.0f", killed)) ms after the kill")
    }

    @Test("etcd frozen (SIGSTOP): calls fail as unreachable within the client's timeouts, not a hang; on SIGCONT the store works again")
    func frozenEtcd() async throws {
        let (cluster, client, store) = try await storeOnItsOwnEtcd()
        defer { cluster.stop() }
        defer { Task { await client.shutdown() } }
        cluster.members[0].pause()
        let (writeError, writeMilliseconds, readError, readMilliseconds) = try await onStoreThread {
            var start = ContinuousClock.now
            let write = storeError { _ = try store.moveCustomer("acme", toCohort: "free", actor: "admin") }
            let writeElapsed = milliseconds(since: start)
            start = ContinuousClock.now
            let read = storeError { _ = try store.customer(named: "acme") }
            return (write, writeElapsed, read, milliseconds(since: start))
        }
        cluster.members[0].resume()
        #expect(writeError?.kind == .unreachable)
        #expect(readError?.kind == .unreachable)
        #expect(writeMilliseconds < 30_000 && readMilliseconds < 30_000)
        let (customer, moved) = try await onStoreThread {
            (try store.customer(named: "acme"), try store.moveCustomer("acme", toCohort: "enterprise", actor: "admin"))
        }
        #expect(customer != nil && moved.cohort == "enterprise")
        print(
            "etcd store: etcd frozen: read failed after \(String(format: "%.0f", readMilliseconds)) ms, write after "
                + "\(String(format: "%.0f", writeMilliseconds)) ms (request timeout 2 s): \(writeError?.description ?? "")")
    }

    @Test("etcd gone: reads and writes fail as unreachable (503 control-plane-unavailable) within the client's timeouts")
    func unreachableEtcd() async throws {
        // An etcd of its own, killed under the store, as a lost cluster.
        let (cluster, client, store) = try await storeOnItsOwnEtcd()
        defer { cluster.stop() }
        defer { Task { await client.shutdown() } }
        cluster.members[0].kill9()

        let (readError, readMilliseconds, writeError, writeMilliseconds) = try await onStoreThread {
            var start = ContinuousClock.now
            let read = storeError { _ = try store.customers() }
            let readElapsed = milliseconds(since: start)
            start = ContinuousClock.now
            let write = storeError { _ = try store.putScriptVersion(customer: "acme", name: "x", source: "--", actor: "c") }
            return (read, readElapsed, write, milliseconds(since: start))
        }
        #expect(readError?.kind == .unreachable)
        #expect(writeError?.kind == .unreachable)
        #expect(readError?.description.contains("the control store is unreachable") == true)
        // Writes queued behind each other each end, unreachable, within their bound.
        let queued = Mutex<[(StoreError?, Double)]>([])
        try await onStoreThread {
            let group = DispatchGroup()
            for index in 0..<4 {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    let start = ContinuousClock.now
                    let error = storeError { _ = try store.putScriptVersion(customer: "acme", name: "q\(index)", source: "--", actor: "c") }
                    let elapsed = milliseconds(since: start)
                    queued.withLock { $0.append((error, elapsed)) }
                }
            }
            group.wait()
        }
        let queuedResults = queued.withLock { $0 }
        #expect(queuedResults.count == 4 && queuedResults.allSatisfy { $0.0?.kind == .unreachable })
        #expect(queuedResults.allSatisfy { $0.1 < 30_000 })
        print("etcd store: 4 writes at once against a dead etcd ended unreachable after "
            + queuedResults.map { String(format: "%.0f", $0.1) }.sorted().joined(separator: ", ") + " ms")
        #expect(ControlError.fromStore(try #require(writeError)).kind == .controlPlaneUnavailable)
        // Bounded by the client's timeouts (3 s failover), not a hang.
        #expect(readMilliseconds < 30_000 && writeMilliseconds < 30_000)
        print(
            "etcd store: etcd killed: read failed after \(String(format: "%.0f", readMilliseconds)) ms, write after "
                + "\(String(format: "%.0f", writeMilliseconds)) ms (client failover 3 s): \(writeError?.description ?? "")")
    }
}
