import ArgumentParser
import AsyncHTTPClient
import BulkheadCore
import ControlAPI
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Rollout
import UnixHTTP

/// How a deployment goes live, as the deploy commands take it.
struct DeploymentStrategyOptions: ParsableArguments {
    @Flag(help: "Deploy gradually: a growing share of requests, each step under the cohort's gate (the default).")
    var gradual = false
    @Flag(help: "Deploy to every request at once.")
    var immediate = false
    @Option(help: "The shares of a gradual deployment, percent, comma-separated (default: the cohort's, e.g. 1,10,50,100).")
    var steps: String?
    @Option(help: "The request header whose value keys the split (default: the client's address).")
    var keyHeader: String?

    func validate() throws {
        if gradual && immediate { throw ValidationError("--gradual and --immediate exclude each other") }
        if immediate && steps != nil { throw ValidationError("--steps applies to a gradual deployment") }
        _ = try parsedSteps()
    }

    func parsedSteps() throws -> [Double]? {
        guard let steps else { return nil }
        var values: [Double] = []
        for part in steps.split(separator: ",") {
            guard let value = Double(part.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--steps must be numbers separated by commas, got '\(steps)'")
            }
            values.append(value)
        }
        if let problem = ScriptDeployDefaults.problem(steps: values) { throw ValidationError("--steps: \(problem)") }
        return values
    }

    func request(version: Int) throws -> StartDeployment {
        StartDeployment(
            version: version, strategy: immediate ? "immediate" : "gradual", steps: try parsedSteps(), keyHeader: keyHeader,
            gate: nil)
    }
}

/// Prints a deployment as people read it.
enum DeploymentText {
    /// `10%`, `0.5%`.
    static func percentText(_ value: Double) -> String {
        value.rounded() == value ? "\(Int(value))%" : "\(value)%"
    }

    static func summary(_ deployment: DeploymentInfo) -> String {
        var lines = [
            "deployment \(deployment.id) of \(deployment.customer)/\(deployment.script): version \(deployment.fromVersion) → \(deployment.version)",
            "  state \(deployment.state), step \(deployment.step) of \(deployment.steps.count) "
                + "(\(deployment.steps.map { percentText($0) }.joined(separator: " → "))), "
                + "candidate share \(percentText(deployment.percent))"
                + (deployment.keyHeader.map { ", keyed by \($0)" } ?? ", keyed by the client's address"),
        ]
        if let current = deployment.current {
            lines.append(
                "  this step: candidate \(current.candidate.requests) requests, \(current.candidate.scriptErrors) errors; "
                    + "old version \(current.baseline.requests) requests, \(current.baseline.scriptErrors) errors")
            if let verdict = current.verdict {
                lines.append("  gate: \(verdict.outcome.rawValue): \(verdict.reasons.joined(separator: "; "))")
            }
        }
        let formatter = ISO8601DateFormatter()
        for decision in deployment.decisions {
            lines.append("  \(formatter.string(from: decision.time)) \(decision.event) by \(decision.by): \(decision.message)")
        }
        return lines.joined(separator: "\n")
    }
}

extension ScriptCommand {
    /// `bulkhead script deploy CUSTOMER NAME --version N`.
    struct Deploy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deploy a stored version of a customer's script, gradually under the gate or at once; prints the deployment id on the last line.",
            discussion: "Store a version without making it live with `bulkhead script put … --no-live`.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @Option(help: "The version to deploy.") var version: Int
        @OptionGroup var strategy: DeploymentStrategyOptions
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let (deployment, answer) = try APIClient(dataOptions).call(
                .POST, "/v1/admin/scripts/\(APIClient.segment(customer))/\(APIClient.segment(name))/deployments",
                body: try strategy.request(version: version), to: .control, as: DeploymentInfo.self)
            print(json ? answer.text : DeploymentText.summary(deployment))
            print(deployment.id)
        }
    }

    /// `bulkhead script deployments CUSTOMER NAME [ID [COMMAND]]`.
    struct Deployments: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a script's deployments, show one, or pause, resume, abort or promote it.")
        @Argument(help: "The customer.") var customer: String
        @Argument(help: "The script name.") var name: String
        @Argument(help: "A deployment id: show it.") var id: Int?
        @Argument(help: "pause, resume, abort or promote the deployment.") var command: String?
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            if let command, DeploymentOperationName(rawValue: command) == nil {
                throw ValidationError("the command must be pause, resume, abort or promote, got '\(command)'")
            }
            if command != nil && id == nil { throw ValidationError("name the deployment's id before the command") }
        }

        func run() throws {
            let base = "/v1/admin/scripts/\(APIClient.segment(customer))/\(APIClient.segment(name))/deployments"
            let client = APIClient(dataOptions)
            guard let id else {
                let (list, answer) = try client.call(.GET, base, to: .control, as: DeploymentList.self)
                if json {
                    print(answer.text)
                    return
                }
                print(Table.render([["ID", "VERSION", "FROM", "STATE", "STEP", "SHARE", "CREATED"]] + list.deployments.map {
                    [String($0.id), String($0.version), String($0.fromVersion), $0.state, "\($0.step)/\($0.steps.count)",
                     DeploymentText.percentText($0.percent), ISO8601DateFormatter().string(from: $0.createdAt)]
                }))
                return
            }
            let (deployment, answer) =
                if let command {
                    try client.call(.POST, "\(base)/\(id)/\(command)", to: .control, as: DeploymentInfo.self)
                } else {
                    try client.call(.GET, "\(base)/\(id)", to: .control, as: DeploymentInfo.self)
                }
            print(json ? answer.text : DeploymentText.summary(deployment))
        }
    }
}

/// The deployment commands by name (the CLI does not link the control plane).
enum DeploymentOperationName: String {
    case pause, resume, abort, promote
}

/// `bulkhead deploy NAME FILE`: a customer deploys a new version of its own script
/// over the control API, with its token.
struct DeployCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Upload a new version of your script and deploy it (for customers, with your API token); prints the deployment id on the last line.",
        discussion: """
            Uploads FILE without making it live, then deploys it: by default gradually, a growing share \
            of your script's requests at each step, each step judged against the version it replaces \
            (errors and new error signatures) and rolled back automatically when it fails. \
            Follow it with `bulkhead deploy NAME --status ID`.
            """)
    @Argument(help: "Your script's name.") var name: String
    @Argument(help: "The Lua file (left out with --status).") var file: String?
    @Option(help: "Show deployment ID of the script instead of deploying.") var status: Int?
    @OptionGroup var strategy: DeploymentStrategyOptions
    @Option(help: "The control API's address.") var api: String = "127.0.0.1:8080"
    @Option(help: "Your API token (default: the BULKHEAD_TOKEN environment variable).") var token: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if (file == nil) == (status == nil) { throw ValidationError("give either a FILE to deploy or --status ID") }
    }

    func run() throws {
        guard let token = token ?? ProcessInfo.processInfo.environment["BULKHEAD_TOKEN"], !token.isEmpty else {
            throw ValidationError("give your API token with --token or BULKHEAD_TOKEN")
        }
        let base = "/v1/scripts/\(APIClient.segment(name))"
        if let status {
            let answer = try Self.send(.GET, "\(base)/deployments/\(status)", body: nil, api: api, token: token)
            let deployment = try Self.decode(DeploymentInfo.self, answer)
            print(json ? answer.text : DeploymentText.summary(deployment))
            return
        }
        guard let file, let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file ?? "")") }
        guard String(data: data, encoding: .utf8) != nil else { throw ValidationError("\(file) is not UTF-8 text; nothing was uploaded") }
        let upload = try Self.decode(UploadAnswer.self, try Self.send(.PUT, "\(base)?live=false", body: data, api: api, token: token))
        if upload.live {
            print("\(name) version \(upload.version) is your script's first version: it is live")
            print(0)
            return
        }
        let body = try JSONEncoder().encode(try strategy.request(version: upload.version))
        let answer = try Self.send(.POST, "\(base)/deployments", body: body, api: api, token: token)
        let deployment = try Self.decode(DeploymentInfo.self, answer)
        print(json ? answer.text : DeploymentText.summary(deployment))
        print(deployment.id)
    }

    /// One request to the control API over TCP with the customer's token.
    static func send(_ method: HTTPMethod, _ uri: String, body: Data?, api: String, token: String) throws -> UnixHTTPClient.Answer {
        do {
            var request = try HTTPClient.Request(url: "http://\(api)\(uri)", method: method)
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            if let body {
                request.headers.add(name: "content-type", value: method == .PUT ? "text/plain" : "application/json")
                request.body = .data(body)
            }
            let response = try HTTPClient.shared.execute(request: request, deadline: .now() + .seconds(30)).wait()
            return UnixHTTPClient.Answer(status: response.status.code, body: response.body.map { Data(buffer: $0) } ?? Data())
        } catch {
            fail("cannot reach the control API at \(api): \(error)")
        }
    }

    static func decode<Body: Decodable>(_ type: Body.Type, _ answer: UnixHTTPClient.Answer) throws -> Body {
        try APIClient.check(answer)
        guard let body = try? APIClient.decoder.decode(type, from: answer.body) else {
            fail("the control API sent an answer this CLI cannot read: \(answer.text.prefix(200))")
        }
        return body
    }
}
