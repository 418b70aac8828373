import ArgumentParser
import BulkheadCore
import ControlAPI
import Foundation

/// `bulkhead customer`: add, list and remove customers, and replace their tokens
/// (over `control.sock`, or the fleet's leader with `--etcd`).
struct CustomerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "customer",
        abstract: "Add, list and remove customers; replace their API tokens.",
        subcommands: [Add.self, List.self, Remove.self, RotateToken.self]
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

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a customer with every script of theirs.",
            discussion: """
                Every script of the customer stops being served, its versions and deployments are deleted (an \
                unfinished deployment ends, aborted), and its API token stops working. The name can be added again \
                later; it then starts with no scripts. Refused without --yes.
                """)
        @Argument(help: "The customer's name.") var name: String
        @Flag(help: "Confirm: every script of the customer is removed with it.") var yes = false
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            guard yes else {
                fail("removing customer \(name) removes every script of theirs, with all their versions and deployments; "
                    + "nothing was changed. Pass --yes to remove it")
            }
            try APIClient(dataOptions).call(.DELETE, "/v1/admin/customers/\(APIClient.segment(name))", to: .control)
            print("customer \(name) removed with its scripts")
        }
    }

    struct RotateToken: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-token",
            abstract: "Give a customer a new API token; prints it on the last line. The old token stops working at once.")
        @Argument(help: "The customer's name.") var name: String
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            let (rotated, _) = try APIClient(dataOptions).call(
                .POST, "/v1/admin/customers/\(APIClient.segment(name))/token", to: .control, as: NewCustomer.self)
            print("customer \(rotated.name) has a new API token; the old one no longer works. The new one (shown once):")
            print(rotated.token)
        }
    }
}
