import Foundation
import TOMLKit

// MARK: - Reading cohort files

extension CohortConfiguration {
    /// The largest cohort file read: a config that outgrows its consumer is refused
    /// with a message, never a crash.
    public static let maxFileBytes = 64 * 1024

    /// Parses and validates one cohort file's text.
    ///
    /// - Parameters:
    ///   - text: the TOML source.
    ///   - file: the path, used in messages; the pool name is its base name without `.toml`.
    public static func parse(_ text: String, file: String) throws(CohortConfigurationError) -> CohortConfiguration {
        var reader = try TableReader(text: text, file: file)
        let poolName = Self.poolName(ofFile: file)

        let name = try reader.string("name")
        guard ResourceName.isValid(name) else {
            throw reader.error("name", "'\(name)' is not a valid cohort name (\(ResourceName.rule))")
        }
        guard name == poolName else {
            throw reader.error("name", "is '\(name)' but the file is named '\(poolName).toml'; they must agree")
        }
        let order = try reader.int("order", in: -1_000_000...1_000_000)
        let port = try reader.int("port", in: 0...65_535)
        let workers = try reader.int("workers", in: 1...64)
        let canary = try reader.int("canary_workers", in: 0...64, default: 0)
        guard canary <= workers else {
            throw reader.error("canary_workers", "is \(canary) but the pool has only \(workers) workers")
        }

        let limits = try reader.limits()
        let gate = try reader.gate()

        var restart = Restart.defaults
        if var section = try reader.section("restart") {
            restart.maxRestarts = try section.int("max_restarts", in: 1...10_000, default: restart.maxRestarts)
            restart.windowSeconds = try section.double("window_seconds", in: 0.1...86_400, default: restart.windowSeconds)
            try section.refuseUnknownKeys()
        }
        let deploy = try reader.deploy()
        try reader.refuseUnknownKeys()

        return CohortConfiguration(
            name: name, order: order, port: port, workers: workers, canaryWorkers: canary,
            limits: limits, gate: gate, restart: restart, deploy: deploy)
    }

    /// The pool name a cohort file stands for: its base name without `.toml`.
    public static func poolName(ofFile file: String) -> String {
        var base = Substring(file)
        if let slash = base.lastIndex(of: "/") { base = base[base.index(after: slash)...] }
        if base.hasSuffix(".toml") { base = base.dropLast(5) }
        return String(base)
    }
}

// MARK: - Reading a directory

/// What reading a cohort directory gave: the good cohorts and, per file, what was wrong.
public struct CohortDirectory: Sendable {
    /// Cohorts that parsed and are consistent with the others, sorted by `order`.
    public var cohorts: [CohortConfiguration]
    /// Files refused, with why. A refused file's pool is absent from `cohorts`.
    public var errors: [CohortConfigurationError]

    /// Reads every `*.toml` in `directory`: each file on its own, then across files
    /// (duplicate name, order or non-zero port). Never throws for a bad file; an
    /// unreadable directory is reported as one error.
    public static func load(_ directory: String) -> CohortDirectory {
        let fileManager = FileManager.default
        let entries: [String]
        do {
            entries = try fileManager.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".toml") }.sorted()
        } catch {
            return CohortDirectory(
                cohorts: [],
                errors: [CohortConfigurationError(file: directory, key: nil, problem: "cannot read the cohort directory: \(error.localizedDescription)")])
        }
        var parsed: [(file: String, cohort: CohortConfiguration)] = []
        var errors: [CohortConfigurationError] = []
        for entry in entries {
            let path = directory.hasSuffix("/") ? directory + entry : directory + "/" + entry
            // The size first, from the file system: an oversized file is refused
            // without reading it into memory.
            if let size = (try? fileManager.attributesOfItem(atPath: path))?[.size] as? Int, size > CohortConfiguration.maxFileBytes {
                errors.append(CohortConfigurationError(
                    file: path, key: nil,
                    problem: "file is \(size) bytes, larger than the \(CohortConfiguration.maxFileBytes)-byte limit"))
                continue
            }
            guard let data = fileManager.contents(atPath: path) else {
                errors.append(CohortConfigurationError(file: path, key: nil, problem: "cannot be read"))
                continue
            }
            guard data.count <= CohortConfiguration.maxFileBytes else {
                errors.append(CohortConfigurationError(
                    file: path, key: nil,
                    problem: "file is \(data.count) bytes, larger than the \(CohortConfiguration.maxFileBytes)-byte limit"))
                continue
            }
            guard let text = String(data: data, encoding: .utf8) else {
                errors.append(CohortConfigurationError(file: path, key: nil, problem: "is not UTF-8 text"))
                continue
            }
            do {
                parsed.append((path, try CohortConfiguration.parse(text, file: path)))
            } catch {
                errors.append(error)
            }
        }
        // Across files: the first file (in name order) keeps a contested value.
        var accepted: [(file: String, cohort: CohortConfiguration)] = []
        for candidate in parsed {
            if let other = accepted.first(where: { $0.cohort.port != 0 && $0.cohort.port == candidate.cohort.port }) {
                errors.append(CohortConfigurationError(
                    file: candidate.file, key: "port",
                    problem: "\(candidate.cohort.port) is already the port of \(other.file)"))
            } else if let other = accepted.first(where: { $0.cohort.order == candidate.cohort.order }) {
                errors.append(CohortConfigurationError(
                    file: candidate.file, key: "order",
                    problem: "\(candidate.cohort.order) is already the order of \(other.file); rollout order must be unambiguous"))
            } else {
                accepted.append(candidate)
            }
        }
        if entries.isEmpty {
            errors.append(CohortConfigurationError(file: directory, key: nil, problem: "holds no *.toml cohort file"))
        }
        return CohortDirectory(cohorts: accepted.map(\.cohort).sorted { $0.order < $1.order }, errors: errors)
    }
}

// MARK: - Typed access with key paths in errors

/// Reads typed values from one TOML table and remembers which keys it used, so the
/// rest can be refused as unknown.
private struct TableReader {
    let file: String
    let table: TOMLTable
    let prefix: String
    var used: Set<String> = []

    init(file: String, table: TOMLTable, prefix: String) {
        self.file = file
        self.table = table
        self.prefix = prefix
    }

    func error(_ key: String, _ problem: String) -> CohortConfigurationError {
        CohortConfigurationError(file: file, key: prefix + key, problem: problem)
    }

    mutating func value(_ key: String) -> TOMLValueConvertible? {
        used.insert(key)
        return table[key]
    }

    mutating func string(_ key: String) throws(CohortConfigurationError) -> String {
        guard let raw = value(key) else { throw error(key, "is missing") }
        guard let string = raw.string else { throw error(key, "must be a string, got \(raw.type)") }
        return string
    }

    mutating func int(_ key: String, in range: ClosedRange<Int>, default fallback: Int? = nil) throws(CohortConfigurationError) -> Int {
        guard let raw = value(key) else {
            if let fallback { return fallback }
            throw error(key, "is missing")
        }
        guard let number = raw.int else { throw error(key, "must be an integer, got \(raw.type)") }
        guard range.contains(number) else {
            throw error(key, "must be between \(range.lowerBound) and \(range.upperBound), got \(number)")
        }
        return number
    }

    mutating func double(_ key: String, in range: ClosedRange<Double>, default fallback: Double) throws(CohortConfigurationError) -> Double {
        guard let raw = value(key) else { return fallback }
        let number: Double
        if let integer = raw.int {
            number = Double(integer)
        } else if let floating = raw.double, floating.isFinite {
            number = floating
        } else {
            throw error(key, "must be a number, got \(raw.type)")
        }
        guard range.contains(number) else {
            throw error(key, "must be between \(range.lowerBound) and \(range.upperBound), got \(number)")
        }
        return number
    }

    /// The `[deploy]` table, nil when absent.
    mutating func deploy() throws(CohortConfigurationError) -> ScriptDeployDefaults? {
        guard var section = try section("deploy") else { return nil }
        var defaults = ScriptDeployDefaults()
        if let raw = section.value("strategy") {
            let names = ScriptDeployStrategy.allCases.map(\.rawValue).joined(separator: ", ")
            guard let text = raw.string, let strategy = ScriptDeployStrategy(rawValue: text) else {
                throw section.error("strategy", "must be one of \(names)")
            }
            defaults.strategy = strategy
        }
        if let raw = section.value("steps") {
            guard let array = raw.array else { throw section.error("steps", "must be an array of percentages, got \(raw.type)") }
            var steps: [Double] = []
            for item in array {
                if let integer = item.int {
                    steps.append(Double(integer))
                } else if let floating = item.double, floating.isFinite {
                    steps.append(floating)
                } else {
                    throw section.error("steps", "must be an array of percentages, got an element of type \(item.type)")
                }
            }
            if let problem = ScriptDeployDefaults.problem(steps: steps) { throw section.error("steps", problem) }
            defaults.steps = steps
        }
        try section.refuseUnknownKeys()
        return defaults
    }

    mutating func section(_ key: String) throws(CohortConfigurationError) -> TableReader? {
        guard let raw = value(key) else { return nil }
        guard let table = raw.table else { throw error(key, "must be a table ([\(prefix + key)]), got \(raw.type)") }
        return TableReader(file: file, table: table, prefix: prefix + key + ".")
    }

    func refuseUnknownKeys() throws(CohortConfigurationError) {
        for key in table.keys.sorted() where !used.contains(key) {
            throw error(key, "is not a known key")
        }
    }
}

// MARK: - What a cohort file and a policy share

extension TableReader {
    /// Parses `text` (a cohort file or a policy, at most `maxFileBytes`) into its
    /// top-level table; `file` names it in messages.
    init(text: String, file: String) throws(CohortConfigurationError) {
        let maxFileBytes = CohortConfiguration.maxFileBytes
        guard text.utf8.count <= maxFileBytes else {
            throw CohortConfigurationError(
                file: file, key: nil,
                problem: "file is \(text.utf8.count) bytes, larger than the \(maxFileBytes)-byte limit")
        }
        // The TOML reader takes a C string: it would stop at a NUL and read a file
        // cut there (a zero-filled tail after a crash) as if it were whole.
        if text.utf8.contains(0) {
            var line = 1
            var column = 1
            for byte in text.utf8.prefix(while: { $0 != 0 }) {
                if byte == UInt8(ascii: "\n") {
                    line += 1
                    column = 1
                } else {
                    column += 1
                }
            }
            throw CohortConfigurationError(
                file: file, key: nil,
                problem: "holds a NUL byte at line \(line), column \(column): not valid TOML (is the file damaged?)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw CohortConfigurationError(
                file: file, key: nil,
                problem: "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw CohortConfigurationError(file: file, key: nil, problem: "not valid TOML: \(error)")
        }
        self.init(file: file, table: table, prefix: "")
    }

    /// The `[limits]` section; each key left out is the free tier's.
    mutating func limits() throws(CohortConfigurationError) -> CohortConfiguration.Limits {
        var limits = CohortConfiguration.Limits.defaults
        guard var section = try section("limits") else { return limits }
        limits.instructions = try section.int("instructions", in: 1_000...100_000_000_000, default: limits.instructions)
        limits.memoryMB = try section.int("memory_mb", in: 1...4096, default: limits.memoryMB)
        limits.wallMilliseconds = try section.int("wall_ms", in: 1...600_000, default: limits.wallMilliseconds)
        limits.maxBodyKB = try section.int("max_body_kb", in: 0...1_048_576, default: limits.maxBodyKB)
        limits.maxScriptKB = try section.int("max_script_kb", in: 1...16_384, default: limits.maxScriptKB)
        try section.refuseUnknownKeys()
        return limits
    }

    /// The `[gate]` section; each key left out is the default gate's.
    mutating func gate() throws(CohortConfigurationError) -> CohortConfiguration.Gate {
        var gate = CohortConfiguration.Gate.defaults
        guard var section = try section("gate") else { return gate }
        gate.bakeSeconds = try section.double("bake_seconds", in: 0...86_400, default: gate.bakeSeconds)
        gate.maxBakeSeconds = try section.double("max_bake_seconds", in: 0...604_800, default: gate.maxBakeSeconds)
        gate.minRequests = try section.int("min_requests", in: 0...100_000_000, default: gate.minRequests)
        gate.maxErrorRate = try section.double("max_error_rate", in: 0...1, default: gate.maxErrorRate)
        gate.maxErrorRateIncrease = try section.double("max_error_rate_increase", in: 0...1, default: gate.maxErrorRateIncrease)
        gate.maxP99Milliseconds = try section.double("max_p99_ms", in: 0.001...600_000, default: gate.maxP99Milliseconds)
        gate.maxNewSignatures = try section.int("max_new_signatures", in: 0...1_000_000, default: gate.maxNewSignatures)
        gate.maxCrashes = try section.int("max_crashes", in: 0...1_000_000, default: gate.maxCrashes)
        guard gate.maxBakeSeconds >= gate.bakeSeconds else {
            throw section.error("max_bake_seconds", "is \(gate.maxBakeSeconds) but must be at least bake_seconds (\(gate.bakeSeconds))")
        }
        try section.refuseUnknownKeys()
        return gate
    }
}

// MARK: - Reading a policy

extension CohortPolicy {
    /// Where a policy's messages say the problem is.
    public static let sourceName = "policy"

    /// Parses a policy: a cohort file's text, of which `name` and `order` are
    /// required, `[limits]` and `[gate]` read as in a cohort file, and the host-local
    /// keys (`port`, `workers`, `canary_workers`, `[restart]`) allowed and ignored;
    /// any other key is refused.
    public static func parse(_ text: String) throws(CohortConfigurationError) -> CohortPolicy {
        var reader = try TableReader(text: text, file: sourceName)
        let name = try reader.string("name")
        guard ResourceName.isValid(name) else {
            throw reader.error("name", "'\(name)' is not a valid cohort name (\(ResourceName.rule))")
        }
        let order = try reader.int("order", in: -1_000_000...1_000_000)
        let limits = try reader.limits()
        let gate = try reader.gate()
        for hostLocal in ["port", "workers", "canary_workers", "restart", "deploy"] { _ = reader.value(hostLocal) }
        try reader.refuseUnknownKeys()
        return CohortPolicy(cohort: name, order: order, limits: limits, gate: gate)
    }
}
