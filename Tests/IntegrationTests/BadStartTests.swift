#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Testing

/// `bulkhead serve` started on bad files: a damaged store and bad cohort files. Each
/// must stop the start with a message that names the file (and key) and says what to
/// do, exit non-zero, start nothing, and leave the bad file as it was. Never a silent
/// empty start.
@Suite(.serialized) struct BadStartTests {
    static func bytes(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    static func write(_ bytes: [UInt8]?, to path: String) throws {
        if let bytes {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        } else {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    // MARK: Damaged store

    struct Damage: Sendable, CustomStringConvertible {
        var name: String
        /// Changes the store's files: (main file, -wal) → (main file, -wal).
        var apply: @Sendable ([UInt8], [UInt8]?) -> ([UInt8]?, [UInt8]?)
        /// The file the message must name: "" for the store, "-wal" for its log.
        var names: String
        var description: String { name }
    }

    static let damages: [Damage] = [
        Damage(name: "store cut to half", apply: { main, wal in (Array(main.prefix(main.count / 2)), wal) }, names: ""),
        Damage(name: "store cut to half, on a page boundary",
               apply: { main, wal in (Array(main.prefix(main.count / 2 / 4096 * 4096)), wal) }, names: ""),
        Damage(name: "store cut to nothing", apply: { _, wal in ([], wal) }, names: ""),
        Damage(name: "store header overwritten", apply: { main, wal in
            var bytes = main
            for index in 0..<100 { bytes[index] = 0x5a }
            return (bytes, wal)
        }, names: ""),
        Damage(name: "page size in the header zeroed", apply: { main, wal in
            var bytes = main
            for index in 16..<18 { bytes[index] = 0 }
            return (bytes, wal)
        }, names: ""),
        Damage(name: "bytes in the middle of the store overwritten", apply: { main, wal in
            var bytes = main
            let middle = bytes.count / 2 / 4096 * 4096
            for index in middle..<min(middle + 4096, bytes.count) { bytes[index] = UInt8(truncatingIfNeeded: index &* 131) }
            return (bytes, wal)
        }, names: ""),
        Damage(name: "every page after the first overwritten", apply: { main, wal in
            var bytes = main
            for index in 4096..<bytes.count { bytes[index] = 0xff }
            return (bytes, wal)
        }, names: ""),
        Damage(name: "write-ahead log of garbage", apply: { main, _ in
            (main, (0..<(64 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) })
        }, names: "-wal"),
        Damage(name: "store gone, its write-ahead log left", apply: { main, _ in
            (nil, (0..<(64 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) })
        }, names: "-wal"),
    ]

    @Test func aDamagedStoreStopsTheStartAndIsLeftAsItWas() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1)])
        defer { host.stop() }
        try host.start()
        // Something worth keeping: a customer (not in the scripts directory) with two
        // versions of a script, and enough rows to span several pages.
        let token = try host.addCustomer("keep", cohort: "free")
        let padding = String(repeating: "-- padding to fill pages\n", count: 400)
        for version in 1...2 {
            let source = "function handle(req) return 'precious v\(version)' end\n" + padding
            #expect(try host.api("PUT", "/v1/scripts/precious", token: token, body: Array(source.utf8)).status == 201)
        }
        for index in 0..<20 { _ = try host.addCustomer("filler-\(index)", cohort: "free") }
        host.signalSupervisor(SIGTERM)
        #expect(host.workerPIDsFromFiles().isEmpty)

        let path = host.data.root + "/bulkhead.sqlite"
        let pristine = try #require(Self.bytes(path))
        let pristineWAL = Self.bytes(path + "-wal")
        let pristineSHM = Self.bytes(path + "-shm")
        print("store after a clean stop: \(pristine.count) bytes, -wal \(pristineWAL?.count ?? -1), -shm \(pristineSHM?.count ?? -1)")
        #expect(pristine.count >= 8 * 4096, "a store of several pages")

        for damage in Self.damages {
            let (main, wal) = damage.apply(pristine, pristineWAL)
            try Self.write(main, to: path)
            try Self.write(wal, to: path + "-wal")
            try Self.write(nil, to: path + "-shm")
            // With a replica the host would start and serve from it (FeedTests); with
            // none there is nothing to serve, and a damaged control store stops the start.
            for suffix in ["", "-wal", "-shm"] { unlink(host.data.root + "/host.sqlite" + suffix) }
            let result = try host.runServeExpectingExit()
            let firstLine = result.output.split(separator: "\n").last { $0.contains("bulkhead serve:") } ?? "(no line from serve)"
            print("\(damage.name): exit \(result.status): \(firstLine)")
            #expect(result.status != 0, "\(damage.name): serve refused to start")
            #expect(result.output.contains("\(path)\(damage.names) ") || result.output.contains("\(path)\(damage.names):"),
                    "\(damage.name): the message names the file: \(result.output)")
            #expect(result.output.contains("Restore") || result.output.contains("move it away"),
                    "\(damage.name): the message says what to do: \(result.output)")
            #expect(Self.bytes(path) == main, "\(damage.name): the store file is untouched")
            #expect(Self.bytes(path + "-wal") == wal, "\(damage.name): the write-ahead log is untouched")
            #expect(host.workerPIDsFromFiles().isEmpty, "\(damage.name): no worker started")
        }

        // The control: the undamaged files start, with everything in them.
        try Self.write(pristine, to: path)
        try Self.write(pristineWAL, to: path + "-wal")
        try Self.write(pristineSHM, to: path + "-shm")
        try host.start()
        let detail = try host.api("GET", "/v1/scripts/precious", token: token)
        #expect(detail.status == 200 && detail.body.contains("precious v2") && detail.body.contains("\"latest_version\":2"))
        let served = waitFor(timeout: 10, interval: 0.05) {
            httpGet(port: (try? host.pool("free").port) ?? 0, host: "precious.keep.localhost")?.body == "precious v2"
        }
        #expect(served != nil)
    }

    // MARK: Bad cohort files

    struct BadCohort: Sendable, CustomStringConvertible {
        var name: String
        /// The bad pro.toml, made from the good one.
        var text: @Sendable (String) -> [UInt8]
        /// Fragments the message must hold (after the file's path).
        var says: [String]
        var description: String { name }
    }

    static func replacing(_ old: String, _ new: String) -> @Sendable (String) -> [UInt8] {
        { good in Array(good.replacingOccurrences(of: old, with: new).utf8) }
    }

    static let badCohorts: [BadCohort] = [
        BadCohort(name: "unparsable TOML", text: { Array(($0 + "\n[limits\nwall_ms = 5\n").utf8) },
                  says: ["pro.toml: not valid TOML at line "]),
        BadCohort(name: "a key twice", text: replacing("workers = 2", "workers = 2\nworkers = 3"), says: ["pro.toml: not valid TOML at line "]),
        BadCohort(name: "unknown top-level key", text: replacing("workers = 2", "workers = 2\nwokers = 3"),
                  says: ["pro.toml: wokers: is not a known key"]),
        BadCohort(name: "unknown key in a section", text: replacing("wall_ms = 400", "wall_ms = 400\nwall_sec = 1"),
                  says: ["pro.toml: limits.wall_sec: is not a known key"]),
        BadCohort(name: "unknown section", text: { Array(($0 + "\n[limit]\nwall_ms = 5\n").utf8) },
                  says: ["pro.toml: limit: is not a known key"]),
        BadCohort(name: "workers out of range", text: replacing("workers = 2", "workers = 0"),
                  says: ["pro.toml: workers: must be between 1 and 64, got 0"]),
        BadCohort(name: "negative wall_ms", text: replacing("wall_ms = 400", "wall_ms = -400"),
                  says: ["pro.toml: limits.wall_ms: must be between 1 and 600000, got -400"]),
        BadCohort(name: "huge max_body_kb", text: replacing("max_body_kb = 64", "max_body_kb = 9223372036854775807"),
                  says: ["pro.toml: limits.max_body_kb: must be between 0 and 1048576"]),
        BadCohort(name: "integer past 64 bits", text: replacing("max_body_kb = 64", "max_body_kb = 99999999999999999999"),
                  says: ["pro.toml: not valid TOML at line "]),
        BadCohort(name: "error rate over 1", text: replacing("min_requests = 20", "min_requests = 20\nmax_error_rate = 1.5"),
                  says: ["pro.toml: gate.max_error_rate: must be between 0.0 and 1.0, got 1.5"]),
        BadCohort(name: "nan", text: replacing("min_requests = 20", "min_requests = 20\nmax_error_rate = nan"),
                  says: ["pro.toml: gate.max_error_rate: must be a number"]),
        BadCohort(name: "wrong type", text: replacing("workers = 2", "workers = \"two\""),
                  says: ["pro.toml: workers: must be an integer, got string"]),
        BadCohort(name: "more canaries than workers", text: replacing("canary_workers = 1", "canary_workers = 3"),
                  says: ["pro.toml: canary_workers: is 3 but the pool has only 2 workers"]),
        BadCohort(name: "name not the file's", text: replacing("name = \"pro\"", "name = \"free\""),
                  says: ["pro.toml: name: is 'free' but the file is named 'pro.toml'"]),
        BadCohort(name: "empty file", text: { _ in [] }, says: ["pro.toml: name: is missing"]),
        BadCohort(name: "not UTF-8", text: { Array($0.utf8) + [0xff, 0xfe, 0x0a] }, says: ["pro.toml: is not UTF-8 text"]),
        // A zero-filled tail, as a crash can leave: the TOML reader stops at a NUL, so
        // a bad key after it would go unseen.
        BadCohort(name: "NUL bytes", text: { Array(($0 + "\n").utf8) + [0x00, 0x00] + Array("\nbad_key = 1\n".utf8) },
                  says: ["pro.toml: holds a NUL byte at line ", "not valid TOML"]),
        BadCohort(name: "deeply nested arrays", text: { Array(($0 + "\nx = " + String(repeating: "[", count: 40_000)).utf8) },
                  says: ["pro.toml: not valid TOML at line "]),
        BadCohort(name: "100 KiB of comments", text: { Array(($0 + String(repeating: "# a comment line\n", count: 6000)).utf8) },
                  says: ["pro.toml: file is ", "larger than the 65536-byte limit"]),
    ]

    @Test func badCohortFilesStopTheFirstStartNamingFileAndKey() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        let file = host.cohorts + "/pro.toml"
        let good = try String(contentsOfFile: file, encoding: .utf8)
        for bad in Self.badCohorts {
            let text = bad.text(good)
            try Data(text).write(to: URL(fileURLWithPath: file))
            let started = Date()
            let result = try host.runServeExpectingExit()
            let line = result.output.split(separator: "\n").first { $0.contains("pro.toml") } ?? "(no line names pro.toml)"
            print("\(bad.name): exit \(result.status) after \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(line.prefix(200))")
            #expect(result.status != 0, "\(bad.name)")
            for fragment in bad.says {
                #expect(result.output.contains(fragment), "\(bad.name): want \(fragment.debugDescription) in: \(result.output)")
            }
            #expect(result.output.contains(file), "\(bad.name): the full path is named")
            #expect(host.workerPIDsFromFiles().isEmpty, "\(bad.name): nothing started")
            #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == Data(text), "\(bad.name): the file is left alone")
        }
        // The control: the good file starts.
        try good.write(toFile: file, atomically: true, encoding: .utf8)
        try host.start()
        #expect(try host.pool("pro").configSource == "file")
    }

    /// The November outage: a config file that outgrew its consumer's limit. Here it
    /// is a 64 GiB file (sparse: it costs no disk). The first start refuses it at once,
    /// without reading it; a later start runs the pool on its last known good config
    /// and says why, and the other pools start as usual.
    @Test func anOversizedCohortFileIsRefusedWithoutReadingIt() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        let file = host.cohorts + "/pro.toml"
        let good = try Data(contentsOf: URL(fileURLWithPath: file))
        func makeHuge() throws {
            let fd = open(file, O_WRONLY | O_TRUNC)
            #expect(fd >= 0)
            #expect(ftruncate(fd, 64 << 30) == 0)
            close(fd)
        }
        try makeHuge()
        let started = Date()
        let first = try host.runServeExpectingExit()
        print("first start with a 64 GiB pro.toml: exit \(first.status) after \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(first.output.suffix(300))")
        #expect(first.status != 0)
        #expect(first.output.contains("\(file): file is 68719476736 bytes, larger than the 65536-byte limit"), "\(first.output)")
        #expect(host.workerPIDsFromFiles().isEmpty)

        try good.write(to: URL(fileURLWithPath: file))
        try host.start()
        host.signalSupervisor(SIGTERM)
        try makeHuge()
        try host.start(waitForReady: false)
        try host.waitUntilReady()
        let status = try host.status()
        let pro = try #require(status.pools.first { $0.name == "pro" })
        print("pro after a restart with a 64 GiB file: \(pro.configSource), \(pro.configError ?? "")")
        #expect(pro.configSource == "last-known-good")
        #expect(pro.configError?.contains("larger than the 65536-byte limit") == true)
        #expect(status.pools.filter { $0.name != "pro" }.map(\.configSource) == ["file", "file"])
        #expect(httpGet(port: pro.port, host: "echo.c-pro.localhost")?.status == 200)
        #expect(httpGet(port: try host.pool("free").port, host: "echo.c-free.localhost")?.status == 200)
    }
}
