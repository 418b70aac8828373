import Foundation
import Store
import Testing

@Suite struct SQLiteStoreDiskFullTests {
    @Test func aFullDiskFailsThePutAndKeepsThePreviousState() throws {
        let directory = try TemporaryDirectory()
        let clock = SteppingClock()
        do {
            let store = try makeStore(in: directory, clock: clock)
            _ = try store.addCustomer(name: "acme", cohort: "pro", tokenHash: hash("acme"), actor: "cli")
            _ = try store.putScriptVersion(customer: "acme", name: "hello", source: "-- small", actor: "c")
            _ = try store.putArtifact(kind: .rules, content: "{}", actor: "admin")
            try store.close()
        }
        // SQLite never lowers the cap below the pages in use: the file cannot grow at all.
        let capped = try makeStore(in: directory, clock: clock, maximumPageCount: 1)
        let diagnostics = try capped.diagnostics()
        #expect(diagnostics.maximumPageCount == diagnostics.pageCount)

        let summary = try capped.script(customer: "acme", name: "hello")
        let versions = try capped.scriptVersions(customer: "acme", name: "hello")
        let events = try capped.auditEvents(after: 0, limit: 100)
        let big = String(repeating: "-- a line of filler to need new pages\n", count: 8_000)

        let error = storeError { _ = try capped.putScriptVersion(customer: "acme", name: "hello", source: big, actor: "c") }
        #expect(error?.kind == .diskFull)
        #expect(error?.description.hasPrefix("disk full: could not save script acme/hello") == true)
        #expect(error?.description.contains(directory.storePath) == true)
        #expect(error?.description.contains("Nothing was written") == true)

        // Nothing half-written: the version, the script row and the audit row all rolled back.
        #expect(try capped.script(customer: "acme", name: "hello") == summary)
        #expect(try capped.scriptVersions(customer: "acme", name: "hello") == versions)
        #expect(try capped.auditEvents(after: 0, limit: 100) == events)
        #expect(storeError { _ = try capped.putScriptVersion(customer: "acme", name: "new", source: big, actor: "c") }?.kind == .diskFull)
        #expect(try capped.script(customer: "acme", name: "new") == nil)
        #expect(storeError { _ = try capped.putArtifact(kind: .runtime, content: big, actor: "admin") }?.kind == .diskFull)
        #expect(try capped.latestArtifact(kind: .runtime) == nil)
        try capped.close()

        // With room again, numbering continues with no gap.
        let roomy = try makeStore(in: directory, clock: clock)
        #expect(try roomy.putScriptVersion(customer: "acme", name: "hello", source: big, actor: "c").version == 2)
        #expect(try roomy.auditEvents(after: 0, limit: 100).count == events.count + 1)
    }
}
