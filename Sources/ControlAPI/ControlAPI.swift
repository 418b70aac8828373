import BulkheadCore
import Foundation
import HostMetrics
import Hummingbird
import HummingbirdAuth
import Logging
import Store
import Rollout
import Control

/// The control API: customers upload and manage their scripts; operators use
/// `/v1/admin/…`. One route table (`ControlAPI.routes`), served by one router on
/// TCP (`--api`, tokens) and on `DATA/run/control.sock` (peers checked at accept).
public enum ControlAPI {
    /// One route: its method, its path (Hummingbird's `:parameter` syntax) and what
    /// answers it, given the operations and the request's context.
    public struct Route: Sendable {
        /// The HTTP method.
        public let method: HTTPRequest.Method
        /// The path, `/v1/scripts/:name`.
        public let path: String
        let handler: @Sendable (ControlOperations, Request, APIRequestContext) async throws -> Response

        /// The path as openapi.yaml writes it: `/v1/scripts/{name}`.
        public var specPath: String {
            ControlAPI.specPath(path)
        }
    }

    /// A Hummingbird path (`/v1/scripts/:name`) as openapi.yaml writes it (`/v1/scripts/{name}`).
    static func specPath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.hasPrefix(":") ? "{\(segment.dropFirst())}" : String(segment)
        }.joined(separator: "/")
    }

    /// The router both listeners serve.
    public static func router(operations: ControlOperations) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        // Middleware first: Hummingbird wraps each route in the middleware added before it.
        router.add(middleware: APIErrorMiddleware(table: routes.map { ($0.method, $0.path) }))
        router.add(middleware: TokenAuthenticator(plane: operations.plane))
        for route in routes {
            router.on(RouterPath(route.path), method: route.method) { request, context in
                try await route.handler(operations, request, context)
            }
        }
        return router
    }

    /// Largest request body the API reads at all; the cohort's own limit is checked after.
    static let maxBodyBytes = 17 * 1024 * 1024

    /// Every route of the control API.
    public static let routes: [Route] = [
        Route(method: .get, path: "/") { operations, _, _ in
            let (status, rollouts) = try await operations.page()
            // The per-second history graphs are the host's (its own /metrics has them as counters).
            let html = StatusPage.render(status: status, history: [:], rollouts: rollouts, now: Date().timeIntervalSince1970)
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: html)))
        },
        Route(method: .get, path: "/healthz") { operations, _, _ in
            json(operations.health())
        },
        Route(method: .get, path: "/openapi.yaml") { operations, request, _ in
            guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
                  let text = try? String(contentsOf: url, encoding: .utf8)
            else { throw ControlError(.missing, "the OpenAPI spec is not bundled") }
            let served = servedSpec(text, api: operations.plane.apiAddress, host: request.head.authority)
            return Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(string: served)))
        },
        Route(method: .get, path: "/metrics") { operations, _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: try await operations.metrics())))
        },

        // MARK: Customer routes
        Route(method: .put, path: "/v1/scripts/:name") { operations, request, context in
            let customer = try context.requireCustomer()
            let source = try await scriptBody(request)
            let answer = try await operations.putScript(
                customer, name: parameter("name", context), source: source, live: try liveParameter(request),
                actor: "customer:\(customer.name)")
            return json(answer, status: .created)
        },
        Route(method: .post, path: "/v1/scripts/:name/deployments") { operations, request, context in
            let customer = try context.requireCustomer()
            let start = try await decode(StartDeployment.self, request, limit: 4096, startDeploymentShape)
            return json(try await operations.startDeployment(
                of: customer.name, name: parameter("name", context), start, actor: "customer:\(customer.name)"), status: .created)
        },
        Route(method: .get, path: "/v1/scripts/:name/deployments") { operations, _, context in
            json(try await operations.deployments(of: try context.requireCustomer().name, name: parameter("name", context)))
        },
        Route(method: .get, path: "/v1/scripts/:name/deployments/:id") { operations, _, context in
            json(try await operations.deployment(
                of: try context.requireCustomer().name, name: parameter("name", context), id: rolloutID(context)))
        },
        Route(method: .post, path: "/v1/scripts/:name/deployments/:id/:command") { operations, _, context in
            let customer = try context.requireCustomer()
            return json(try await operations.operate(
                deployment: rolloutID(context), of: customer.name, name: parameter("name", context),
                try deploymentOperation(context), actor: "customer:\(customer.name)"))
        },
        Route(method: .get, path: "/v1/scripts") { operations, _, context in
            json(try await operations.scripts(of: try context.requireCustomer().name))
        },
        Route(method: .get, path: "/v1/scripts/:name") { operations, _, context in
            json(try await operations.script(of: try context.requireCustomer().name, name: parameter("name", context)))
        },
        Route(method: .get, path: "/v1/scripts/:name/versions") { operations, _, context in
            json(try await operations.versions(of: try context.requireCustomer().name, name: parameter("name", context)))
        },
        Route(method: .get, path: "/v1/scripts/:name/logs") { operations, _, context in
            json(try await operations.logs(of: try context.requireCustomer().name, name: parameter("name", context)))
        },
        Route(method: .post, path: "/v1/scripts/:name/rollback") { operations, request, context in
            let customer = try context.requireCustomer()
            let version = try await rollbackVersion(request)
            return json(try await operations.rollbackScript(
                of: customer.name, name: parameter("name", context), to: version, actor: "customer:\(customer.name)"))
        },
        Route(method: .post, path: "/v1/token") { operations, _, context in
            // The bearer token is the current one; it stops working with this answer.
            let customer = try context.requireCustomer()
            return json(try await operations.rotateToken(of: customer.name, actor: "customer:\(customer.name)"))
        },
        Route(method: .delete, path: "/v1/scripts/:name") { operations, _, context in
            let customer = try context.requireCustomer()
            try await operations.deleteScript(of: customer.name, name: parameter("name", context), actor: "customer:\(customer.name)")
            return Response(status: .noContent)
        },

        // MARK: Admin routes
        Route(method: .get, path: "/v1/admin/status") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.status())
        },
        Route(method: .get, path: "/v1/admin/customers") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.customers())
        },
        Route(method: .post, path: "/v1/admin/customers") { operations, request, context in
            try context.requireAdmin()
            let create = try await decode(CreateCustomer.self, request, limit: 4096, "the body must be {\"name\": …, \"cohort\": …}")
            return json(try await operations.addCustomer(create, actor: context.actor), status: .created)
        },
        Route(method: .delete, path: "/v1/admin/customers/:name") { operations, _, context in
            try context.requireAdmin()
            try await operations.removeCustomer(parameter("name", context), actor: context.actor)
            return Response(status: .noContent)
        },
        Route(method: .post, path: "/v1/admin/customers/:name/token") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.rotateToken(of: parameter("name", context), actor: context.actor))
        },
        Route(method: .post, path: "/v1/admin/customers/:name/move") { operations, request, context in
            try context.requireAdmin()
            let move = try await decode(MoveCustomer.self, request, limit: 4096, "the body must be {\"cohort\": …}")
            return json(try await operations.moveCustomer(parameter("name", context), to: move.cohort, actor: context.actor))
        },
        Route(method: .get, path: "/v1/admin/scripts") { operations, request, context in
            try context.requireAdmin()
            return json(try await operations.allScripts(of: request.uri.queryParameters["customer"].map(String.init)))
        },
        Route(method: .put, path: "/v1/admin/scripts/:customer/:name") { operations, request, context in
            try context.requireAdmin()
            let source = try await scriptBody(request)
            let answer = try await operations.putScript(
                for: parameter("customer", context), name: parameter("name", context), source: source,
                live: try liveParameter(request), actor: context.actor)
            return json(answer, status: .created)
        },
        Route(method: .post, path: "/v1/admin/scripts/:customer/:name/deployments") { operations, request, context in
            try context.requireAdmin()
            let start = try await decode(StartDeployment.self, request, limit: 4096, startDeploymentShape)
            return json(try await operations.startDeployment(
                of: parameter("customer", context), name: parameter("name", context), start, actor: context.actor), status: .created)
        },
        Route(method: .get, path: "/v1/admin/scripts/:customer/:name/deployments") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.deployments(of: parameter("customer", context), name: parameter("name", context)))
        },
        Route(method: .get, path: "/v1/admin/scripts/:customer/:name/deployments/:id") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.deployment(
                of: parameter("customer", context), name: parameter("name", context), id: rolloutID(context)))
        },
        Route(method: .post, path: "/v1/admin/scripts/:customer/:name/deployments/:id/:command") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.operate(
                deployment: rolloutID(context), of: parameter("customer", context), name: parameter("name", context),
                try deploymentOperation(context), actor: context.actor))
        },
        Route(method: .post, path: "/v1/admin/scripts/:customer/:name/rollback") { operations, request, context in
            try context.requireAdmin()
            let version = try await rollbackVersion(request)
            return json(try await operations.rollbackScript(
                of: parameter("customer", context), name: parameter("name", context), to: version, actor: context.actor))
        },
        Route(method: .post, path: "/v1/admin/scripts/:customer/:name/unquarantine") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.releaseQuarantine(of: parameter("customer", context), name: parameter("name", context)))
        },
        Route(method: .get, path: "/v1/admin/rollouts") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.rollouts())
        },
        Route(method: .post, path: "/v1/admin/rollouts") { operations, request, context in
            try context.requireAdmin()
            let start = try await decode(StartRollout.self, request, limit: maxBodyBytes,
                                         "the body must be {\"kind\": \"runtime|rules|binary\", \"content\": …}")
            return json(try await operations.startRollout(start, actor: context.actor), status: .created)
        },
        Route(method: .get, path: "/v1/admin/rollouts/:id") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.rollout(rolloutID(context)))
        },
        Route(method: .post, path: "/v1/admin/rollouts/:id/:command") { operations, _, context in
            try context.requireAdmin()
            let name = parameter("command", context)
            guard let command = ControlOperations.RolloutCommand(rawValue: name) else {
                throw ControlError(.notFound, "no rollout command '\(name)'")
            }
            return json(try await operations.operate(rollout: rolloutID(context), command, actor: context.actor))
        },

        // MARK: A fleet
        Route(method: .get, path: "/v1/admin/fleet") { operations, _, context in
            try context.requireAdmin()
            return json(try await operations.fleet())
        },
        Route(method: .post, path: "/v1/fleet/hosts/:name/report") { operations, request, context in
            // The host's own token, checked against its key in the store (not an API identity).
            guard let token = request.headers.bearer?.token, !token.isEmpty else {
                throw ControlError(.unauthorized, "send Authorization: Bearer REPORT_TOKEN (its hash is in the host's key)")
            }
            let report = try await decode(HostReport.self, request, limit: 4 * 1024 * 1024, "the body must be a host report")
            try await operations.acceptReport(report, from: parameter("name", context), token: token)
            return Response(status: .noContent)
        },
    ]

    // MARK: Reading requests

    static func parameter(_ name: String, _ context: some RequestContext) -> String {
        context.parameters.get(name) ?? ""
    }

    static func rolloutID(_ context: some RequestContext) -> Int {
        context.parameters.get("id").flatMap { Int($0) } ?? -1
    }

    /// The spec with its server set to the address this API serves: `--api`, or,
    /// when that is a wildcard (0.0.0.0, [::]), the host the client named (if it is
    /// a plain host[:port]); as bundled when neither is known.
    static func servedSpec(_ text: String, api: String?, host: String?) -> String {
        let wildcard = api.map { $0.hasPrefix("0.0.0.0:") || $0.hasPrefix("[::]:") } ?? true
        let plainHost = host.flatMap { name -> String? in
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
            return !name.isEmpty && name.count <= 255 && name.allSatisfy(allowed.contains) ? name : nil
        }
        guard let address = wildcard ? plainHost : api else { return text }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let servers = lines.firstIndex(of: "servers:"), servers + 1 < lines.count,
              lines[servers + 1].hasPrefix("  - url: ")
        else { return text }
        lines[servers + 1] = "  - url: http://\(address)"
        return lines.joined(separator: "\n")
    }

    /// What a deployment's body must look like, for the error that refuses another.
    static let startDeploymentShape =
        "the body must be {\"version\": N, \"strategy\": \"immediate|gradual\", \"steps\": [1, 10, 50, 100], \"key_header\": …} (all but version optional)"

    /// `?live=false` on an upload: store without going live. Absent: true.
    static func liveParameter(_ request: Request) throws(ControlError) -> Bool {
        switch request.uri.queryParameters["live"].map(String.init) {
        case nil, "true": true
        case "false": false
        case let other?: throw ControlError(.invalid, "live must be true or false, got '\(other)'")
        }
    }

    /// The command of `…/deployments/{id}/{command}`.
    static func deploymentOperation(_ context: some RequestContext) throws(ControlError) -> DeploymentOperation {
        let name = parameter("command", context)
        guard let operation = DeploymentOperation(rawValue: name) else {
            throw ControlError(.notFound, "no deployment command '\(name)' (pause, resume, abort, promote)")
        }
        return operation
    }

    /// A script upload's body, up to the largest any cohort allows.
    static func scriptBody(_ request: Request) async throws(ControlError) -> Data {
        do {
            return Data(buffer: try await request.body.collect(upTo: maxBodyBytes))
        } catch {
            throw ControlError(.tooLarge, "the script is larger than any cohort allows")
        }
    }

    /// The version a rollback asks for: nil for the previous one.
    static func rollbackVersion(_ request: Request) async throws(ControlError) -> Int? {
        let body = (try? await request.body.collect(upTo: 4096)) ?? ByteBuffer()
        guard body.readableBytes > 0 else { return nil }
        guard let decoded = RollbackRequest.parse(Data(buffer: body)) else {
            throw ControlError(.invalid, "the body must be empty, {} or {\"version\": N} with N ≥ 1")
        }
        return decoded.version
    }

    /// A JSON body, or `invalid` with `message`.
    static func decode<Body: Decodable>(_ type: Body.Type, _ request: Request, limit: Int, _ message: String) async throws(ControlError) -> Body {
        let body = (try? await request.body.collect(upTo: limit)) ?? ByteBuffer()
        guard let decoded = try? JSONDecoder().decode(type, from: Data(buffer: body)) else { throw ControlError(.invalid, message) }
        return decoded
    }
}

extension APIRequestContext {
    /// Who an operator's change is audited as: `admin-api` over TCP, `operator` over
    /// `control.sock` (the CLI), `etcd-operator:WHO` for a fleet's session.
    var actor: String {
        if case .fleetOperator(let who) = identity { return "etcd-operator:\(who)" }
        return listener == .controlSocket ? "operator" : "admin-api"
    }
}

/// Runs a blocking call off Swift's cooperative threads (there are only
/// as many as cores, and a script check can take a second).
func offQueue<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: work()) }
    }
}

let jsonEncoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    return encoder
}()

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? jsonEncoder.encode(value)) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// The one place a `ControlError.Kind` becomes an HTTP status.
extension HTTPResponse.Status {
    init(for kind: ControlError.Kind) {
        switch kind {
        case .invalid, .invalidName, .invalidRuntime, .invalidRules, .invalidBinary, .invalidPolicy, .syntax, .scriptError, .noHandle,
             .limitCPU, .limitMemory, .limitWall, .checkFailed, .notUTF8, .noCohort:
            self = .badRequest
        case .unauthorized: self = .unauthorized
        case .forbidden: self = .forbidden
        case .notFound: self = .notFound
        case .methodNotAllowed: self = .methodNotAllowed
        case .exists, .conflict, .sameCohort, .frozen, .pinned, .notPinned, .rejectedVersion, .rolloutRunning, .rolloutEnded,
             .rollout, .notQuarantined:
            self = .conflict
        case .tooLarge: self = .contentTooLarge
        case .rateLimited: self = .tooManyRequests
        case .noPool, .controlPlaneUnavailable, .hostUnavailable: self = .serviceUnavailable
        case .diskFull: self = .init(code: 507, reasonPhrase: "Insufficient Storage")
        case .store, .missing, .internal: self = .internalServerError
        }
    }
}

/// The answer to a refusal: `{"error": kind, "message": …}` with the kind's status.
func failure(_ error: ControlError) -> Response {
    json(ErrorBody(error: error.kind.rawValue, message: error.message), status: HTTPResponse.Status(for: error.kind))
}

/// Turns the `ControlError` a handler throws into its answer, and a known path asked
/// with a method it does not take into 405 with `Allow` (the router alone would say
/// 404, as if the path did not exist).
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Path patterns (one segment per `*`) and the methods they take, from the route table.
    let routes: [(pattern: [String], methods: String)]

    init(table: [(HTTPRequest.Method, String)]) {
        var methods: [[String]: [String]] = [:]
        var order: [[String]] = []
        for (method, path) in table {
            let pattern = path.split(separator: "/").map { $0.hasPrefix(":") ? "*" : String($0) }
            if methods[pattern] == nil { order.append(pattern) }
            methods[pattern, default: []].append(method.rawValue)
        }
        routes = order.map { ($0, (methods[$0] ?? []).joined(separator: ", ")) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ControlError {
            return failure(error)
        } catch let error as HTTPError where error.status == .notFound {
            let segments = request.uri.path.split(separator: "/").map(String.init)
            guard let route = routes.first(where: { route in
                route.pattern.count == segments.count
                    && zip(route.pattern, segments).allSatisfy { $0 == "*" || $0 == $1 }
            }) else { throw error }
            var response = failure(ControlError(.methodNotAllowed, "\(request.method) is not allowed here; use \(route.methods)"))
            response.headers[.allow] = route.methods
            return response
        }
    }
}
