import ArgumentParser
import BulkheadCore
import ControlAPI
import Foundation

/// `bulkhead script`: operate on customers' scripts.
struct ScriptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "script",
        abstract: "Operate on customers' scripts.",
        subcommands: [Put.self, List.self, Rollback.self, Unquarantine.self, Logs.self, Deploy.self, Deployments.self]
    )

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a new version of a customer's script; prints the version on the last line.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @Argument(help: "The Lua file.") var file: String
        @Flag(help: "Store the version without making it live (deploy it with `script deploy`).") var noLive = false
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            // Refused, not repaired: decoding with replacement would store other bytes
            // than the file's under a hash of those other bytes.
            guard let source = String(data: data, encoding: .utf8) else {
                throw ValidationError("\(file) is not UTF-8 text; nothing was uploaded")
            }
            let client = APIClient(dataOptions)
            let uri = "/v1/admin/scripts/\(APIClient.segment(customer))/\(APIClient.segment(name))" + (noLive ? "?live=false" : "")
            let answer: APIClient.Answer
            do {
                answer = try client.send(.PUT, uri, body: Data(source.utf8), to: .control)
            } catch {
                fail("cannot reach bulkhead control at \(client.path(of: .control)): \(error)")
            }
            try APIClient.check(answer)
            guard let version = try? APIClient.decoder.decode(UploadAnswer.self, from: answer.body) else {
                fail("the supervisor sent an answer this CLI cannot read: \(answer.text.prefix(200))")
            }
            if let deployment = version.deployment {
                print("\(customer)/\(name) version \(version.version) (sha256 \(version.sha256)) is stored; deployment \(deployment) takes it live gradually")
            } else {
                print("\(customer)/\(name) version \(version.version) (sha256 \(version.sha256)) is \(version.live ? "live" : "stored, not live")")
            }
            print(version.version)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List scripts, of one customer or all.")
        @Argument(help: "The customer (all when left out).") var customer: String?
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let query = customer.map { "?customer=\(APIClient.segment($0))" } ?? ""
            let (list, answer) = try APIClient(dataOptions).call(
                .GET, "/v1/admin/scripts" + query, to: .control, as: CustomerScriptList.self)
            if json {
                print(answer.text)
                return
            }
            print(Table.render([["CUSTOMER", "SCRIPT", "ACTIVE", "LATEST", "STATE"]] + list.scripts.map {
                [$0.customer ?? "-", $0.name, String($0.activeVersion), String($0.latestVersion), $0.quarantined ? "quarantined" : "ok"]
            }))
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an earlier version active (the previous one, or --to V).")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @Option(help: "The version to make active.") var to: Int?
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            _ = try APIClient(dataOptions).call(
                .POST, "/v1/admin/scripts/\(APIClient.segment(customer))/\(APIClient.segment(name))/rollback",
                body: RollbackRequest(version: to), to: .control, as: ScriptInfo.self)
            print("\(customer)/\(name) rolled back")
        }
    }

    struct Unquarantine: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Release a script quarantined for killing workers.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            _ = try APIClient(dataOptions).call(
                .POST, "/v1/admin/scripts/\(APIClient.segment(customer))/\(APIClient.segment(name))/unquarantine",
                to: .control, as: Released.self)
            print("released \(customer)/\(name)")
        }
    }

    struct Logs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a script's recent log lines and errors.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            let (logs, _) = try APIClient(dataOptions).call(
                .GET, "/v1/host/scripts/\(APIClient.segment(customer))/\(APIClient.segment(name))/logs", to: .host, as: LogLines.self)
            // Script output: escaped, so it cannot drive the operator's terminal.
            for line in logs.lines { print(ControlCharacters.escaped(line)) }
        }
    }
}
