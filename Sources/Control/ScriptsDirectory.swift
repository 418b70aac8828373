import BulkheadCore
import Foundation

/// A scripts directory given to `serve --scripts DIR`: `DIR/customers.toml` maps each
/// customer to its cohort (`acme = "pro"`), `DIR/CUSTOMER/NAME.lua` are the scripts.
/// The supervisor reads it on start and polls it; what changed goes into the store
/// as the scripts' next versions, exactly like an upload.
///
/// A poll reads only the files (scripts, and `customers.toml`) whose
/// ``FileIdentity`` changed since the poll that stored them: the others cost one
/// `stat` each. Reading every file and comparing it with the store four times a
/// second took about 1% of a core with 1,000 scripts, on the core the workers serve
/// from.
struct ScriptsDirectory {
    /// Customer → cohort, when `customers.toml` was read (new or changed).
    var assignments: [String: String] = [:]
    /// Customer → script name → source, for the files read (new or changed).
    var sources: [String: [String: String]] = [:]
    /// Path → identity, for every file found (read or not).
    var identities: [String: FileIdentity] = [:]
    /// What could not be read, for the log.
    var problems: [String] = []

    /// The path of a customer's script file.
    static func path(_ directory: String, customer: String, name: String) -> String {
        directory + "/" + customer + "/" + name + ".lua"
    }

    /// The path of the customers map.
    static func customersPath(_ directory: String) -> String {
        directory + "/customers.toml"
    }

    /// Reads `directory`; a file whose identity is the one in `known` is listed in
    /// ``identities`` but not read.
    static func read(_ directory: String, known: [String: FileIdentity] = [:]) -> ScriptsDirectory {
        var result = ScriptsDirectory()
        let fileManager = FileManager.default
        let mapPath = customersPath(directory)
        let mapIdentity = FileIdentity(path: mapPath)
        result.identities[mapPath] = mapIdentity
        if mapIdentity == nil || known[mapPath] != mapIdentity,
           let text = try? String(contentsOfFile: mapPath, encoding: .utf8) {
            do {
                let map = try CustomersFile.parse(text, file: mapPath)
                result.assignments = map.assignments
                result.problems += map.problems.map(\.description)
            } catch {
                // Not TOML: no entry is taken, so every customer keeps the cohort
                // the store has; the file is read again once it changes.
                result.problems.append(error.description)
            }
        }
        let customers = (try? fileManager.contentsOfDirectory(atPath: directory)) ?? []
        for customer in customers.sorted() {
            var isDirectory: ObjCBool = false
            let folder = directory + "/" + customer
            guard fileManager.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            guard ResourceName.isValid(customer) else {
                result.problems.append("\(folder): '\(customer)' is not a valid customer name (\(ResourceName.rule))")
                continue
            }
            for file in ((try? fileManager.contentsOfDirectory(atPath: folder)) ?? []).sorted() where file.hasSuffix(".lua") {
                let name = String(file.dropLast(4))
                guard ResourceName.isValid(name) else {
                    result.problems.append("\(folder)/\(file): '\(name)' is not a valid script name (\(ResourceName.rule))")
                    continue
                }
                let path = folder + "/" + file
                guard let identity = FileIdentity(path: path) else {
                    result.problems.append("\(path): cannot be read (\(String(cString: strerror(errno))))")
                    continue
                }
                result.identities[path] = identity
                if known[path] == identity { continue }
                guard let data = fileManager.contents(atPath: path),
                      let source = String(data: data, encoding: .utf8)
                else {
                    result.problems.append("\(folder)/\(file): cannot be read as UTF-8 text")
                    continue
                }
                result.sources[customer, default: [:]][name] = source
            }
        }
        return result
    }
}

/// What the supervisor's polls of a scripts directory know they stored.
struct StoredScriptFiles {
    /// Path → identity of each file whose source is in the store as it was read.
    var identities: [String: FileIdentity] = [:]
    /// Paths forgotten (``forget(_:)``) while a poll ran: it must not record them.
    var forgotten: Set<String> = []

    /// A change to the store made elsewhere (the API) for this file's script: the
    /// next poll reads the file again and stores it if it differs, so the file wins,
    /// as it does after a restart.
    mutating func forget(_ path: String) {
        identities[path] = nil
        forgotten.insert(path)
    }
}
