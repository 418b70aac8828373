#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store
import Testing

/// The host agent follows the control store's change feed and serves from its replica.
@Suite(.serialized) struct FeedTests {
    /// Seeds the control store before the host starts: `customers` customers in
    /// `cohort`, `perCustomer` scripts each. Returns the seconds it took.
    func seed(_ host: HostHarness, cohort: String, customers: Int, perCustomer: Int) throws -> Double {
        let started = Date()
        let store = try SQLiteStore(dataDirectory: host.data)
        for customer in 0..<customers {
            let name = "bulk\(customer)"
            _ = try store.addCustomer(name: name, cohort: cohort, tokenHash: TokenHash.of(token: "bht_\(name)"), actor: "test")
            for script in 0..<perCustomer {
                _ = try store.putScriptVersion(
                    customer: name, name: "s\(script)", source: "function handle(req) return '\(name) s\(script)' end",
                    actor: "test")
            }
        }
        try store.close()
        return Date().timeIntervalSince(started)
    }

    @Test func oneUploadAmongFiveThousandScriptsIsReadAndPushedAloneAndGoesLiveFast() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 2)])
        defer { host.stop() }
        let seeded = try seed(host, cohort: "free", customers: 50, perCustomer: 100)
        print("seeded 5,000 scripts in \(String(format: "%.1f", seeded)) s")
        try host.start()
        let token = try host.addCustomer("hot", cohort: "free")
        let ready = waitFor(timeout: 60) { (try? host.status().feed?.appliedRevision) == (try? host.status().feed?.latestRevision) }
        #expect(ready != nil)
        let before = try #require(try host.status().feed)
        #expect(before.scriptsRead >= 5_000, "the first start copies every script once")

        // Every worker serves a seeded script.
        let port = try host.pool("free").port
        #expect(httpGet(port: port, host: "s99.bulk49.localhost")?.body == "bulk49 s99")

        var durations: [Double] = []
        for version in 1...20 {
            let workers = try host.pool("free").workers.map(\.pid)
            let counters = try #require(try host.status().feed)
            let started = Date()
            let answer = try host.api("PUT", "/v1/scripts/live", token: token, body: Array("function handle(req) return 'v\(version)' end".utf8))
            #expect(answer.status == 201, "\(answer.body)")
            let live = waitFor(timeout: 10, interval: 0.001) {
                guard let pool = try? host.pool("free") else { return false }
                let confirmed = pool.workers.filter { $0.lastLoadedScript == "hot/live@\(version)" }.map(\.pid)
                return Set(confirmed).isSuperset(of: workers)
            }
            let elapsed = Date().timeIntervalSince(started)
            #expect(live != nil, "version \(version) never confirmed by every worker")
            durations.append(elapsed)
            let after = try #require(try host.status().feed)
            #expect(after.scriptsRead - counters.scriptsRead == 1, "one upload reads one script from the control store")
            #expect(after.scriptsPushed - counters.scriptsPushed == workers.count, "and pushes it once to each worker")
            #expect(after.fullCopies == counters.fullCopies)
        }
        durations.sort()
        let median = (durations[9] + durations[10]) / 2
        print("""
            upload to live on every worker of the pool (2 workers, 5,000 scripts): median \
            \(String(format: "%.1f", median * 1000)) ms, min \(String(format: "%.1f", durations[0] * 1000)) ms, \
            max \(String(format: "%.1f", durations[19] * 1000)) ms over 20 uploads (goal ≤ 100 ms; PUT includes the compile check)
            """)
        #expect(median < 1.0)
        #expect(httpGet(port: port, host: "live.hot.localhost")?.body == "v20")
    }

    @Test func aHostRestartedWhileTheControlStoreIsUnreadableServesFromItsReplica() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 2)])
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("acme", cohort: "free")
        #expect(try host.api("PUT", "/v1/scripts/hello", token: token, body: Array("function handle(req) return 'hello v1' end".utf8)).status == 201)
        let port = try host.pool("free").port
        #expect(waitFor(timeout: 10) { httpGet(port: port, host: "hello.acme.localhost")?.body == "hello v1" } != nil)
        // Stopped whole (its workers drain and exit), files kept.
        host.signalSupervisor(SIGTERM)
        #expect(waitFor(timeout: 10) { host.workerPIDsFromFiles().allSatisfy { kill($0, 0) != 0 } } != nil)

        // The control store is moved aside; a file that is not SQLite takes its name.
        let storeFile = host.data.storeFile
        let saved = host.root + "/saved.sqlite"
        for suffix in ["", "-wal", "-shm"] { _ = rename(storeFile + suffix, saved + suffix) }
        #expect(FileManager.default.createFile(
            atPath: storeFile, contents: Data("this is not a database, it is a note\n".utf8), attributes: [.posixPermissions: 0o600]))

        try host.start()
        let status = try host.status()
        #expect(status.feed?.problem != nil, "status says the control store cannot be followed")
        #expect(status.feed?.appliedRevision != nil)
        let newPort = try host.pool("free").port
        #expect(waitFor(timeout: 10) { httpGet(port: newPort, host: "hello.acme.localhost")?.body == "hello v1" } != nil,
                "every worker serves the script from the replica")
        let text = try host.cli(["status"])
        #expect(text.status == 0 && text.output.contains("replica at revision"), "\(text.output)")

        // Meanwhile the control store takes an upload (as control would), then comes back.
        let store = try SQLiteStore(path: saved)
        _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "function handle(req) return 'hello v2' end", actor: "test")
        try store.close()
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: saved + suffix) {
            _ = rename(saved + suffix, storeFile + suffix)
        }
        let back = waitFor(timeout: 15) { httpGet(port: newPort, host: "hello.acme.localhost")?.body == "hello v2" }
        print("upload made while the control store was away live \(back.map { String(format: "%.2f s", $0) } ?? "never") after it came back")
        #expect(back != nil)
        #expect(try host.status().feed?.problem == nil)
    }
}
