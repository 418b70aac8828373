import Foundation
import Testing

@testable import BulkheadCore

@Suite struct CohortConfigurationTests {
    static let valid = """
        name = "free"
        order = 1
        port = 8101
        workers = 2
        canary_workers = 1

        [limits]
        instructions = 10_000_000
        memory_mb = 32
        wall_ms = 1000
        max_body_kb = 1024
        max_script_kb = 1024

        [gate]
        bake_seconds = 10
        max_bake_seconds = 120
        min_requests = 50
        max_error_rate = 0.01
        max_error_rate_increase = 0.005
        max_p99_ms = 250
        max_new_signatures = 0
        max_crashes = 0

        [restart]
        max_restarts = 5
        window_seconds = 10
        """

    @Test func parsesTheDocumentedFormat() throws {
        let cohort = try CohortConfiguration.parse(Self.valid, file: "cohorts/free.toml")
        #expect(cohort.name == "free")
        #expect(cohort.port == 8101)
        #expect(cohort.workers == 2)
        #expect(cohort.canaryWorkers == 1)
        #expect(cohort.limits.instructions == 10_000_000)
        #expect(cohort.limits.memoryBytes == 32 * 1024 * 1024)
        #expect(cohort.gate.maxErrorRateIncrease == 0.005)
        #expect(cohort.gate.bakeSeconds == 10)
        #expect(cohort.restart.maxRestarts == 5)
    }

    @Test func sectionsAreOptional() throws {
        let cohort = try CohortConfiguration.parse(
            "name = \"pro\"\norder = 2\nport = 0\nworkers = 1\n", file: "x/pro.toml")
        #expect(cohort.limits == .defaults)
        #expect(cohort.canaryWorkers == 0)
    }

    @Test(arguments: [
        ("workers = 2", "workers = 0", "workers", "between 1 and 64"),
        ("memory_mb = 32", "memory_mb = 0", "limits.memory_mb", "between 1 and 4096"),
        ("memory_mb = 32", "memory_mb = \"big\"", "limits.memory_mb", "must be an integer"),
        ("max_crashes = 0", "max_crashes = 0\nmax_crash = 1", "gate.max_crash", "not a known key"),
        ("canary_workers = 1", "canary_workers = 3", "canary_workers", "only 2 workers"),
        ("port = 8101", "port = 70000", "port", "between 0 and 65535"),
        ("name = \"free\"", "name = \"pro\"", "name", "must agree"),
        ("order = 1", "", "order", "is missing"),
        ("max_bake_seconds = 120", "max_bake_seconds = 5", "gate.max_bake_seconds", "at least bake_seconds"),
        ("window_seconds = 10", "window_seconds = 10\nextra = true", "restart.extra", "not a known key"),
    ])
    func refusesWithFileKeyAndProblem(original: String, replacement: String, key: String, problem: String) {
        let text = Self.valid.replacingOccurrences(of: original, with: replacement)
        #expect {
            _ = try CohortConfiguration.parse(text, file: "cohorts/free.toml")
        } throws: { error in
            guard let error = error as? CohortConfigurationError else { return false }
            return error.file == "cohorts/free.toml" && error.key == key && error.problem.contains(problem)
                && error.description.hasPrefix("cohorts/free.toml: \(key): ")
        }
    }

    @Test func refusesBadTOMLWithItsLine() {
        #expect {
            _ = try CohortConfiguration.parse("name = \"free\"\norder = = 1\n", file: "free.toml")
        } throws: { error in
            (error as? CohortConfigurationError)?.problem.contains("line 2") == true
        }
    }

    @Test func refusesAnOversizedFile() {
        let text = Self.valid + "\n#" + String(repeating: "x", count: CohortConfiguration.maxFileBytes)
        #expect(throws: CohortConfigurationError.self) {
            _ = try CohortConfiguration.parse(text, file: "free.toml")
        }
    }

    /// The TOML reader stops at a NUL: without this refusal, a bad value after one (a
    /// zero-filled tail, then more text) would go unseen.
    @Test func refusesANULByteWithItsPlace() {
        let text = "name = \"free\"\norder = 1\nport = 0\n\u{0}\u{0}\nworkers = 0\n"
        #expect {
            _ = try CohortConfiguration.parse(text, file: "free.toml")
        } throws: { error in
            (error as? CohortConfigurationError)?.description == "free.toml: holds a NUL byte at line 4, column 1: not valid TOML (is the file damaged?)"
        }
        // The same text without the NULs is read to the end, and its last line refused.
        #expect {
            _ = try CohortConfiguration.parse(text.replacingOccurrences(of: "\u{0}", with: ""), file: "free.toml")
        } throws: { error in
            (error as? CohortConfigurationError)?.key == "workers"
        }
    }

    /// An oversized file is refused by its size, without being read: here a sparse
    /// 1 TiB file, which no process could read into memory.
    @Test func directoryRefusesAnOversizedFileWithoutReadingIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cohorts-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.valid.write(toFile: directory + "/free.toml", atomically: true, encoding: .utf8)
        #expect(FileManager.default.createFile(atPath: directory + "/pro.toml", contents: nil))
        #expect(truncate(directory + "/pro.toml", 1 << 40) == 0)
        let result = CohortDirectory.load(directory)
        #expect(result.cohorts.map(\.name) == ["free"])
        #expect(result.errors.map(\.description) == ["\(directory)/pro.toml: file is 1099511627776 bytes, larger than the 65536-byte limit"])
    }

    @Test func directoryRefusesDuplicatePortsAndOrders() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cohorts-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func write(_ name: String, order: Int, port: Int) throws {
            try "name = \"\(name)\"\norder = \(order)\nport = \(port)\nworkers = 1\n"
                .write(toFile: directory + "/\(name).toml", atomically: true, encoding: .utf8)
        }
        try write("a", order: 1, port: 9001)
        try write("b", order: 2, port: 9001)
        try write("c", order: 1, port: 0)
        try write("d", order: 3, port: 0)
        try "not toml = = =".write(toFile: directory + "/e.toml", atomically: true, encoding: .utf8)
        let result = CohortDirectory.load(directory)
        #expect(result.cohorts.map(\.name) == ["a", "d"])
        #expect(result.errors.count == 3)
        #expect(result.errors.contains { $0.file.hasSuffix("b.toml") && $0.key == "port" })
        #expect(result.errors.contains { $0.file.hasSuffix("c.toml") && $0.key == "order" })
        #expect(result.errors.contains { $0.file.hasSuffix("e.toml") && $0.key == nil })
    }
}

@Suite struct ErrorSignatureTests {
    @Test func removesLineNumbersAndAddresses() {
        #expect(ErrorSignature.normalize("runtime.lua:42: attempt to index a nil value (field 'execute')")
            == "runtime.lua: attempt to index a nil value (field 'execute')")
        #expect(ErrorSignature.normalize("runtime.lua:7: attempt to index a nil value (field 'execute')")
            == ErrorSignature.normalize("runtime.lua:42: attempt to index a nil value (field 'execute')"))
        #expect(ErrorSignature.normalize("bad table: 0x55d0c0ffee00 in x") == "bad table: 0x? in x")
        #expect(ErrorSignature.normalize("time 12:30 ok") == "time 12:30 ok")
    }
}

@Suite struct LatencyHistogramTests {
    @Test func quantilesAreWithinABucket() {
        var histogram = LatencyHistogram()
        for micros in 1...1000 { histogram.record(nanoseconds: UInt64(micros) * 1000) }
        let p50 = histogram.quantileMilliseconds(0.5) ?? 0
        let p99 = histogram.quantileMilliseconds(0.99) ?? 0
        #expect(p50 >= 0.5 && p50 <= 0.5 * 1.3)
        #expect(p99 >= 0.99 && p99 <= 0.99 * 1.3)
        #expect(histogram.total == 1000)
        let later = histogram
        histogram.record(nanoseconds: 5_000_000)
        #expect(histogram.since(later).total == 1)
    }

    @Test func bucketsGrowMonotonically() {
        var last = 0
        for micros in [UInt64(0), 1, 2, 3, 4, 5, 7, 8, 100, 1000, 65_000, 10_000_000, UInt64.max / 1000] {
            let bucket = LatencyHistogram.bucket(forMicroseconds: micros)
            #expect(bucket >= last)
            #expect(Double(micros) <= LatencyHistogram.upperBound(ofBucket: bucket) || bucket == LatencyHistogram.bucketCount - 1)
            last = bucket
        }
    }
}

@Suite struct CohortPolicyTests {
    @Test func aCohortFileIsAPolicyWithItsHostLocalKeysIgnored() throws {
        let policy = try CohortPolicy.parse(CohortConfigurationTests.valid)
        let cohort = try CohortConfiguration.parse(CohortConfigurationTests.valid, file: "cohorts/free.toml")
        #expect(policy == CohortPolicy(cohort))
        #expect(policy.cohort == "free")
        #expect(policy.order == 1)
    }

    @Test func aPolicyReplacesOrderLimitsAndGateAndKeepsTheRest() throws {
        let cohort = try CohortConfiguration.parse(CohortConfigurationTests.valid, file: "cohorts/free.toml")
        let policy = try CohortPolicy.parse("""
            name = "free"
            order = 7
            [limits]
            instructions = 2_000
            [gate]
            bake_seconds = 3
            """)
        let applied = policy.applied(to: cohort)
        #expect(applied.order == 7)
        #expect(applied.limits.instructions == 2_000)
        #expect(applied.limits.memoryMB == CohortConfiguration.Limits.defaults.memoryMB, "a key left out is the default's, as in a cohort file")
        #expect(applied.gate.bakeSeconds == 3)
        #expect(applied.port == cohort.port)
        #expect(applied.workers == cohort.workers)
        #expect(applied.canaryWorkers == cohort.canaryWorkers)
        #expect(applied.restart == cohort.restart)
    }

    @Test(arguments: [
        ("order = 1\n", "name", "is missing"),
        ("name = \"free\"\n", "order", "is missing"),
        ("name = \"Free!\"\norder = 1\n", "name", "not a valid cohort name"),
        ("name = \"free\"\norder = 1\n[limits]\ninstructions = 10\n", "limits.instructions", "between 1000"),
        ("name = \"free\"\norder = 1\n[gate]\nbake_seconds = 10\nmax_bake_seconds = 5\n", "gate.max_bake_seconds", "at least bake_seconds"),
        ("name = \"free\"\norder = 1\nlimits_v2 = 3\n", "limits_v2", "not a known key"),
    ])
    func aBadPolicyIsRefusedNamingTheKey(text: String, key: String, problem: String) {
        #expect {
            try CohortPolicy.parse(text)
        } throws: { error in
            guard let error = error as? CohortConfigurationError else { return false }
            return error.key == key && error.problem.contains(problem) && error.file == "policy"
        }
    }

    @Test func versionsFromAWorkerBuiltBeforePoliciesReadAsPolicyZero() throws {
        let old = try JSONDecoder().decode(ArtifactVersions.self, from: Data(#"{"runtime":2,"rules":1,"binary":3}"#.utf8))
        #expect(old == ArtifactVersions(runtime: 2, rules: 1, binary: 3, policy: 0))
        var versions = ArtifactVersions()
        versions[.policy] = 4
        #expect(versions.policy == 4 && versions[.policy] == 4)
        let again = try JSONDecoder().decode(ArtifactVersions.self, from: try JSONEncoder().encode(versions))
        #expect(again == versions)
    }
}
