import Dispatch
import Foundation
import Store
import Synchronization
import Testing

@Suite struct SQLiteStoreConcurrencyTests {
    /// Uploads `perThread` versions from each of `threads` threads, each thread using
    /// `stores[thread % stores.count]`; returns the versions handed out.
    private func storm(_ stores: [SQLiteStore], threads: Int, perThread: Int) -> (versions: [Int], errors: [String]) {
        let versions = Mutex<[Int]>([])
        let errors = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let store = stores[thread % stores.count]
            for round in 0..<perThread {
                do {
                    let put = try store.putScriptVersion(
                        customer: "acme", name: "hello", source: "-- thread \(thread) round \(round)", actor: "t\(thread)")
                    versions.withLock { $0.append(put.version) }
                    // Readers run beside the writer and never see a half-done upload.
                    let summary = try store.script(customer: "acme", name: "hello")
                    if summary == nil || summary?.activeVersion == 0 { errors.withLock { $0.append("no active version") } }
                } catch {
                    errors.withLock { $0.append("\(error)") }
                }
            }
        }
        return (versions.withLock { $0 }, errors.withLock { $0 })
    }

    @Test func anUploadStormGivesUniqueConsecutiveVersions() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")

        let result = storm([store], threads: 8, perThread: 25)
        #expect(result.errors.isEmpty)
        #expect(result.versions.sorted() == Array(1...200))

        let stored = try store.scriptVersions(customer: "acme", name: "hello")
        #expect(stored.map(\.version) == Array(1...200))
        #expect(try store.script(customer: "acme", name: "hello")?.activeVersion == 200)
        // Each version holds the source its sha256 says.
        for version in [1, 77, 200] {
            let source = try store.scriptSource(customer: "acme", name: "hello", version: version)
            #expect(SHA256Hasher.hex(source.source) == source.version.sha256)
        }
        #expect(try auditActions(store).filter { $0 == "script.put" }.count == 200)
    }

    @Test func twoStoresOnOneFileShareTheNumbering() throws {
        // Like the supervisor and a break-glass CLI in another process: two pools, two
        // writer connections, one file, serialized by SQLite's lock.
        let directory = try TemporaryDirectory()
        let first = try makeStore(in: directory)
        let second = try makeStore(in: directory)
        _ = try first.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")

        let result = storm([first, second], threads: 6, perThread: 15)
        #expect(result.errors.isEmpty)
        #expect(result.versions.sorted() == Array(1...90))
        #expect(try second.scriptVersions(customer: "acme", name: "hello").count == 90)
    }
}
