import ArgumentParser
import BulkheadCore
import Foundation

/// `bulkhead customer`: add and list customers (over the admin socket).
struct CustomerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "customer",
        abstract: "Add and list customers.",
        subcommands: [Add.self, List.self]
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a customer; prints its API token on the last line.")
        @Argument(help: "The customer's name.") var name: String
        @Option(help: "Its cohort.") var cohort: String
        @OptionGroup var dataOptions: DataOptions

        func run() throws {
            let result = try AdminCall.perform(
                AdminRequest(command: "customer-add", arguments: ["name": name, "cohort": cohort]), data: dataOptions.data)
            let created = try JSONDecoder().decode([String: String].self, from: Data(result.utf8))
            print("customer \(name) added to the \(cohort) cohort; its API token (shown once):")
            print(created["token"] ?? "")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List customers and their cohorts.")
        @OptionGroup var dataOptions: DataOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let result = try AdminCall.perform(AdminRequest(command: "customer-list"), data: dataOptions.data)
            if json {
                print(result)
                return
            }
            let customers = try JSONDecoder().decode([[String: String]].self, from: Data(result.utf8))
            print(Table.render([["CUSTOMER", "COHORT"]] + customers.map { [$0["name"] ?? "", $0["cohort"] ?? ""] }))
        }
    }
}
