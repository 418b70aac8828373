import BulkheadCore
import Foundation
import Testing

@testable import Control

/// The scripts directory on a real temporary directory: a poll reads only the files
/// whose identity changed since the identities it is given.
@Suite struct ScriptsDirectoryTests {
    let root: String

    init() throws {
        root = FileManager.default.temporaryDirectory.path + "/bulkhead-scripts-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/acme", withIntermediateDirectories: true)
        try "acme = \"free\"\n".write(toFile: root + "/customers.toml", atomically: true, encoding: .utf8)
    }

    func write(_ name: String, _ source: String) throws {
        try source.write(toFile: ScriptsDirectory.path(root, customer: "acme", name: name), atomically: false, encoding: .utf8)
    }

    /// Sets a script's modification time an hour back, so that a rewrite within the
    /// same clock tick still changes its identity.
    func age(_ name: String) {
        let hourAgo = timespec(tv_sec: FileIdentity.now().tv_sec - 3600, tv_nsec: 0)
        var times = [hourAgo, hourAgo]
        #expect(utimensat(AT_FDCWD, ScriptsDirectory.path(root, customer: "acme", name: name), &times, 0) == 0)
    }

    @Test func aPollReadsOnlyNewAndChangedFiles() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("a", "return 'a'")
        try write("b", "return 'b'")
        age("a")
        let first = ScriptsDirectory.read(root)
        #expect(first.assignments == ["acme": "free"])
        #expect(first.sources["acme"] == ["a": "return 'a'", "b": "return 'b'"])
        #expect(first.identities.count == 3, "two scripts and customers.toml")

        // Nothing changed: every file listed, none read.
        let second = ScriptsDirectory.read(root, known: first.identities)
        #expect(second.sources.isEmpty)
        #expect(second.assignments.isEmpty)
        #expect(second.identities == first.identities)

        // One file rewritten in place (same size), one added, one replaced by rename.
        try write("a", "return 'A'")
        try write("c", "return 'c'")
        let replacement = root + "/acme/.b.tmp"
        try "return 'B'".write(toFile: replacement, atomically: false, encoding: .utf8)
        #expect(rename(replacement, ScriptsDirectory.path(root, customer: "acme", name: "b")) == 0)
        try "acme = \"pro\"\n".write(toFile: ScriptsDirectory.customersPath(root), atomically: true, encoding: .utf8)
        let third = ScriptsDirectory.read(root, known: second.identities)
        #expect(third.sources["acme"] == ["a": "return 'A'", "b": "return 'B'", "c": "return 'c'"])
        #expect(third.assignments == ["acme": "pro"], "replaced by rename: a new inode")
        #expect(third.problems.isEmpty)
    }

    @Test func onlyFilesUnchangedForASecondAreSettled() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("a", "return 'a'")
        let path = ScriptsDirectory.path(root, customer: "acme", name: "a")
        let fresh = try #require(FileIdentity(path: path))
        #expect(!fresh.isSettled(at: FileIdentity.now()), "just written: may change again within its tick")
        let later = timespec(tv_sec: FileIdentity.now().tv_sec + 3, tv_nsec: 0)
        #expect(fresh.isSettled(at: later))
        #expect(FileIdentity(path: root + "/acme/missing.lua") == nil)
    }

    @Test func aFileNotKnownIsReadEveryPoll() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("a", "return 'a'")
        // A caller that could not store a file leaves it out of what it knows.
        let first = ScriptsDirectory.read(root)
        let again = ScriptsDirectory.read(root, known: [:])
        #expect(again.sources == first.sources)
    }

    // MARK: customers.toml is TOML

    func writeCustomers(_ text: String) throws {
        try text.write(toFile: ScriptsDirectory.customersPath(root), atomically: true, encoding: .utf8)
    }

    @Test func customersMayUseAnyTOMLKeyAndStringForm() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try writeCustomers("""
            # customer = "cohort"
            "acme" = "pro"
            beta = 'free'  # a literal string
            gamma="free"
            """)
        let read = ScriptsDirectory.read(root)
        #expect(read.assignments == ["acme": "pro", "beta": "free", "gamma": "free"])
        #expect(read.problems.isEmpty, "\(read.problems)")
    }

    @Test func aCustomersFileThatIsNotTOMLIsRefusedWhole() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try writeCustomers("acme = \"free\"\nbeta = pro\n")
        let read = ScriptsDirectory.read(root)
        // No entry of it is taken: the store keeps every customer's last cohort.
        #expect(read.assignments.isEmpty)
        #expect(read.problems.count == 1)
        let problem = read.problems.first ?? ""
        #expect(problem.hasPrefix(ScriptsDirectory.customersPath(root) + ":2: not valid TOML"), "\(problem)")
        #expect(problem.contains("CUSTOMER = \"COHORT\""), "\(problem)")
    }

    @Test func badCustomerEntriesAreRefusedByKeyAndTheOthersKept() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try writeCustomers("""
            "Acme" = "free"
            loud = "PRO"
            count = 3
            nested.key = "free"
            good = "free"
            """)
        let read = ScriptsDirectory.read(root)
        #expect(read.assignments == ["good": "free"])
        let path = ScriptsDirectory.customersPath(root)
        #expect(read.problems.sorted() == [
            "\(path): Acme: 'Acme' is not a valid customer name (\(ResourceName.rule))",
            "\(path): count: must be a cohort name in quotes (\"COHORT\"), got integer",
            "\(path): loud: 'PRO' is not a valid cohort name (\(ResourceName.rule))",
            "\(path): nested: must be a cohort name in quotes (\"COHORT\"), got table",
        ])
    }
}
