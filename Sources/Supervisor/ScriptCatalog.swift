import BulkheadCore
import Foundation

/// The customers, their cohorts and their active scripts, as the supervisor ships
/// them to workers.
///
/// Filled from `--demo` and from a scripts directory (`--scripts DIR`): one folder
/// per customer holding `NAME.lua` files, and `DIR/customers.toml` mapping each
/// customer to its cohort (`acme = "pro"`). The directory is read again on every
/// `reload()`: a changed file becomes the script's next version.
public struct ScriptCatalog: Sendable, Equatable {
    /// Customer → cohort.
    public private(set) var assignments: [String: String] = [:]
    /// Customer → script name → active script.
    public private(set) var scripts: [String: [String: ScriptSpec]] = [:]

    /// An empty catalog.
    public init() {}

    /// The `hello` script every demo customer gets.
    public static let demoHello = """
        -- The demo script: answers with a greeting naming the pool's cohort.
        local count = 0
        function handle(req)
          count = count + 1
          return {
            status = 200,
            headers = { ["content-type"] = "text/plain" },
            body = "hello from " .. COHORT .. " (request " .. count .. " on this worker)\\n",
          }
        end
        """

    /// Adds `demo-free`, `demo-pro`, `demo-enterprise` (one per given cohort), each
    /// with a `hello` script.
    public mutating func seedDemo(cohorts: [String]) {
        for cohort in cohorts {
            let customer = "demo-\(cohort)"
            assignments[customer] = cohort
            let source = "COHORT = \"\(cohort)\"\n" + Self.demoHello
            put(ScriptSpec(customer: customer, name: "hello", version: 1, source: source))
        }
    }

    /// Assigns a customer to a cohort.
    public mutating func assign(customer: String, to cohort: String) {
        assignments[customer] = cohort
    }

    /// Sets a script's active version.
    public mutating func put(_ spec: ScriptSpec) {
        scripts[spec.customer, default: [:]][spec.name] = spec
    }

    /// Every script of the customers assigned to `cohort`.
    public func scripts(forCohort cohort: String) -> [ScriptSpec] {
        assignments.filter { $0.value == cohort }.keys.sorted().flatMap { customer in
            (scripts[customer] ?? [:]).values.sorted { $0.name < $1.name }
        }
    }

    /// Reads a scripts directory. A changed source gets the next version number;
    /// unreadable or badly named entries are reported, not fatal.
    public mutating func load(directory: String) -> [String] {
        var problems: [String] = []
        let fileManager = FileManager.default
        let mapPath = directory + "/customers.toml"
        if let text = try? String(contentsOfFile: mapPath, encoding: .utf8) {
            for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, ResourceName.isValid(parts[0]) else {
                    problems.append("\(mapPath):\(number + 1): expected CUSTOMER = \"COHORT\"")
                    continue
                }
                let cohort = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                assignments[parts[0]] = cohort
            }
        }
        guard let customers = try? fileManager.contentsOfDirectory(atPath: directory) else {
            return problems + ["\(directory): cannot be read"]
        }
        for customer in customers.sorted() {
            var isDirectory: ObjCBool = false
            let folder = directory + "/" + customer
            guard fileManager.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            guard ResourceName.isValid(customer) else {
                problems.append("\(folder): '\(customer)' is not a valid customer name (\(ResourceName.rule))")
                continue
            }
            for file in ((try? fileManager.contentsOfDirectory(atPath: folder)) ?? []).sorted() where file.hasSuffix(".lua") {
                let name = String(file.dropLast(4))
                guard ResourceName.isValid(name) else {
                    problems.append("\(folder)/\(file): '\(name)' is not a valid script name (\(ResourceName.rule))")
                    continue
                }
                guard let data = fileManager.contents(atPath: folder + "/" + file),
                      let source = String(data: data, encoding: .utf8)
                else {
                    problems.append("\(folder)/\(file): cannot be read as UTF-8 text")
                    continue
                }
                let current = scripts[customer]?[name]
                if current?.source != source {
                    put(ScriptSpec(customer: customer, name: name, version: (current?.version ?? 0) + 1, source: source))
                }
            }
        }
        return problems
    }
}
