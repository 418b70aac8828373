import ArgumentParser
import BulkheadCore
import Foundation

/// `bulkhead script`: operate on customers' scripts.
struct ScriptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "script",
        abstract: "Operate on customers' scripts.",
        subcommands: [Unquarantine.self, Logs.self]
    )

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
            for line in lines { print(line) }
        }
    }
}
