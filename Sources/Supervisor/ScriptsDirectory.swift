import BulkheadCore
import Foundation

/// A scripts directory given to `serve --scripts DIR`: `DIR/customers.toml` maps each
/// customer to its cohort (`acme = "pro"`), `DIR/CUSTOMER/NAME.lua` are the scripts.
/// The supervisor reads it on start and polls it; what changed goes into the store
/// as the scripts' next versions, exactly like an upload.
///
/// A poll reads only the files (scripts, and `customers.toml`) whose
/// ``FileSignature`` changed since the poll that stored them: the others cost one
/// `stat` each. Reading every file and
/// comparing it with the store four times a second took about 1% of a core with
/// 1,000 scripts, on the core the workers serve from.
struct ScriptsDirectory {
    /// Customer → cohort, when `customers.toml` was read (new or changed).
    var assignments: [String: String] = [:]
    /// Customer → script name → source, for the files read (new or changed).
    var sources: [String: [String: String]] = [:]
    /// Path → signature, for every file found (read or not).
    var signatures: [String: FileSignature] = [:]
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

    /// Reads `directory`; a file whose signature is the one in `known` is listed in
    /// ``signatures`` but not read.
    static func read(_ directory: String, known: [String: FileSignature] = [:]) -> ScriptsDirectory {
        var result = ScriptsDirectory()
        let fileManager = FileManager.default
        let mapPath = customersPath(directory)
        let mapSignature = FileSignature(path: mapPath)
        result.signatures[mapPath] = mapSignature
        if mapSignature == nil || known[mapPath] != mapSignature,
           let text = try? String(contentsOfFile: mapPath, encoding: .utf8) {
            for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                let cohort = parts.count == 2 ? parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) : ""
                guard parts.count == 2, ResourceName.isValid(parts[0]), ResourceName.isValid(cohort) else {
                    result.problems.append("\(mapPath):\(number + 1): expected CUSTOMER = \"COHORT\"")
                    continue
                }
                result.assignments[parts[0]] = cohort
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
                guard let signature = FileSignature(path: path) else {
                    result.problems.append("\(path): cannot be read (\(String(cString: strerror(errno))))")
                    continue
                }
                result.signatures[path] = signature
                if known[path] == signature { continue }
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

/// What tells a file's contents changed without reading them: a write changes the
/// modification and status-change times, a replacement (an editor's rename, `mv`)
/// the inode.
struct FileSignature: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: timespec
    var changed: timespec

    /// The signature of the file at `path`; nil when it cannot be stat'ed (errno set).
    init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modified = status.st_mtim
        changed = status.st_ctim
    }

    /// Whether the file last changed at least a second before `now` (CLOCK_REALTIME).
    /// File times are coarse (a few milliseconds), so a file written twice in the
    /// same tick, at the same size, keeps its signature: a caller records only
    /// settled signatures, and reads an unsettled file again on the next poll.
    func isSettled(at now: timespec) -> Bool {
        changed.tv_sec < now.tv_sec - 1 && modified.tv_sec < now.tv_sec - 1
    }

    /// The time now, for ``isSettled(at:)``.
    static func now() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }

    static func == (a: FileSignature, b: FileSignature) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size
            && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
            && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
    }
}
