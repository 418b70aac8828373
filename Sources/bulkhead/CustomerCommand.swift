import ArgumentParser
import BulkheadCore
import ControlAPI
import Foundation

/// `bulkhead customer`: add and list customers (over `control.sock`).
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
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            let (created, _) = try APIClient(dataOptions).call(
                .POST, "/v1/admin/customers", body: CreateCustomer(name: name, cohort: cohort), to: .control, as: NewCustomer.self)
            print("customer \(created.name) added to the \(created.cohort) cohort; its API token (shown once):")
            print(created.token)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List customers and their cohorts.")
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let (list, answer) = try APIClient(dataOptions).call(.GET, "/v1/admin/customers", to: .control, as: CustomerList.self)
            if json {
                print(answer.text)
                return
            }
            print(Table.render([["CUSTOMER", "COHORT"]] + list.customers.map { [$0.name, $0.cohort] }))
        }
    }
}
