import ArgumentParser
import BulkheadCore
import Foundation

/// `bulkhead script`: operate on customers' scripts.
struct ScriptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "script",
        abstract: "Operate on customers' scripts.",
        subcommands: [Put.self, List.self, Rollback.self, Unquarantine.self, Logs.self]
    )

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a new version of a customer's script; prints the version on the last line.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @Argument(help: "The Lua file.") var file: String
        @OptionGroup var dataOptions: DataOptions

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            // Refused, not repaired: decoding with replacement would store other bytes
            // than the file's under a hash of those other bytes.
            guard let source = String(data: data, encoding: .utf8) else {
                throw ValidationError("\(file) is not UTF-8 text; nothing was uploaded")
            }
            let result = try AdminCall.perform(
                AdminRequest(command: "script-put", arguments: [
                    "customer": customer, "script": name, "source": source,
                ]), data: dataOptions.data)
            let version = try JSONDecoder().decode(VersionAnswer.self, from: Data(result.utf8))
            print("\(customer)/\(name) version \(version.version) (sha256 \(version.sha256)) is live")
            print(version.version)
        }

        struct VersionAnswer: Decodable {
            var version: Int
            var sha256: String
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List scripts, of one customer or all.")
        @Argument(help: "The customer (all when left out).") var customer: String?
        @OptionGroup var dataOptions: DataOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            var arguments: [String: String] = [:]
            if let customer { arguments["customer"] = customer }
            let result = try AdminCall.perform(AdminRequest(command: "script-list", arguments: arguments), data: dataOptions.data)
            if json {
                print(result)
                return
            }
            struct Row: Decodable {
                var customer: String
                var name: String
                var activeVersion: Int
                var latestVersion: Int
                var quarantined: Bool
            }
            let rows = try JSONDecoder().decode([Row].self, from: Data(result.utf8))
            print(Table.render([["CUSTOMER", "SCRIPT", "ACTIVE", "LATEST", "STATE"]] + rows.map {
                [$0.customer, $0.name, String($0.activeVersion), String($0.latestVersion), $0.quarantined ? "quarantined" : "ok"]
            }))
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an earlier version active (the previous one, or --to V).")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @Option(help: "The version to make active.") var to: Int?
        @OptionGroup var dataOptions: DataOptions

        func run() throws {
            var arguments = ["customer": customer, "script": name]
            if let to { arguments["version"] = String(to) }
            _ = try AdminCall.perform(AdminRequest(command: "script-rollback", arguments: arguments), data: dataOptions.data)
            print("\(customer)/\(name) rolled back")
        }
    }

    struct Unquarantine: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Release a script quarantined for killing workers.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @OptionGroup var dataOptions: DataOptions

        func run() throws {
            _ = try AdminCall.perform(
                AdminRequest(command: "unquarantine", arguments: ["customer": customer, "script": name]), data: dataOptions.data)
            print("released \(customer)/\(name)")
        }
    }

    struct Logs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a script's recent log lines and errors.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @OptionGroup var dataOptions: DataOptions

        func run() throws {
            let result = try AdminCall.perform(
                AdminRequest(command: "logs", arguments: ["customer": customer, "script": name]), data: dataOptions.data)
            let lines = (try? JSONDecoder().decode([String].self, from: Data(result.utf8))) ?? []
            // Script output: escaped, so it cannot drive the operator's terminal.
            for line in lines { print(ControlCharacters.escaped(line)) }
        }
    }
}
