import BulkheadCore
import Foundation
import HostMetrics
import Hummingbird
import Logging
import Store
import Rollout
import Supervisor

/// The control API: customers upload and manage their scripts; operators use
/// `/v1/admin/…` with the admin token. Built on Hummingbird, served from the
/// supervisor process.
public enum ControlAPI {
    /// Builds the application. `onRunning` receives the real port (the address may
    /// ask for port 0). `connections` bounds what clients can make it hold (see
    /// `APIConnectionLimits.resolve`, which keeps the supervisor's reserve free).
    public static func application(
        supervisor: Supervisor, host: String, port: Int, connections: APIConnectionLimits, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: MethodNotAllowedMiddleware())
        let handlers = Handlers(supervisor: supervisor)
        handlers.register(on: router)
        let connectionGuard = APIConnectionGuard(limits: connections, logger: logger)
        return Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [connectionGuard.makeHandler()])),
            configuration: .init(
                address: .hostname(host, port: port), serverName: "bulkhead",
                availableConnectionsDelegate: .maximum(connections.acceptCeiling, logger: logger)),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}

/// The route handlers.
struct Handlers: Sendable {
    let supervisor: Supervisor

    /// Largest request body the API reads at all; the cohort's own limit is checked after.
    static let maxBodyBytes = 17 * 1024 * 1024

    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in
            let (status, history, rollouts) = await offQueue { supervisor.pageData() }
            let html = StatusPage.render(status: status, history: history, rollouts: rollouts, now: Date().timeIntervalSince1970)
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: html)))
        }
        router.get("/healthz") { _, _ in
            json(Health(status: "ok", pools: supervisor.currentStatus().pools.count))
        }
        router.get("/openapi.yaml") { _, _ in
            guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
                  let data = try? Data(contentsOf: url)
            else { return failure(ControlError(status: 500, kind: "missing", message: "the OpenAPI spec is not bundled")) }
            return Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: MetricsText.render(supervisor.metricsSnapshot()))))
        }

        // MARK: Customer routes
        router.put("/v1/scripts/:name") { request, context in
            try await customerRoute(request) { customer in
                let name = context.parameters.get("name") ?? ""
                let body: ByteBuffer
                do {
                    body = try await request.body.collect(upTo: Self.maxBodyBytes)
                } catch {
                    return failure(ControlError(status: 413, kind: "too-large", message: "the script is larger than any cohort allows"))
                }
                let data = Data(buffer: body)
                let result = await offQueue { supervisor.putScript(customer: customer, name: name, source: data, actor: "customer:\(customer.name)") }
                switch result {
                case .success(let version): return json(UploadAnswer(version), status: .created)
                case .failure(let error): return failure(error)
                }
            }
        }
        router.get("/v1/scripts") { request, _ in
            try await customerRoute(request) { customer in
                respond(await offQueue { supervisor.listScripts(customer: customer.name) }) { ScriptList(scripts: $0.map(ScriptInfo.init)) }
            }
        }
        router.get("/v1/scripts/:name") { request, context in
            try await customerRoute(request) { customer in
                let name = context.parameters.get("name") ?? ""
                return respond(await offQueue { supervisor.script(customer: customer.name, name: name) }) {
                    ScriptDetail(script: ScriptInfo($0.0), source: $0.1)
                }
            }
        }
        router.get("/v1/scripts/:name/versions") { request, context in
            try await customerRoute(request) { customer in
                let name = context.parameters.get("name") ?? ""
                return respond(await offQueue { supervisor.scriptVersions(customer: customer.name, name: name) }) {
                    VersionList(versions: $0.map(VersionInfo.init))
                }
            }
        }
        router.get("/v1/scripts/:name/logs") { request, context in
            try await customerRoute(request) { customer in
                let name = context.parameters.get("name") ?? ""
                return respond(await offQueue { supervisor.scriptLogLines(customer: customer.name, name: name) }) { LogLines(lines: $0) }
            }
        }
        router.post("/v1/scripts/:name/rollback") { request, context in
            try await customerRoute(request) { customer in
                let name = context.parameters.get("name") ?? ""
                let body = (try? await request.body.collect(upTo: 4096)) ?? ByteBuffer()
                var requested: Int?
                if body.readableBytes > 0 {
                    guard let decoded = RollbackRequest.parse(Data(buffer: body)) else {
                        return failure(ControlError(status: 400, kind: "invalid", message: "the body must be empty, {} or {\"version\": N} with N ≥ 1"))
                    }
                    requested = decoded.version
                }
                let target = requested
                return respond(await offQueue {
                    supervisor.rollbackScript(customer: customer.name, name: name, to: target, actor: "customer:\(customer.name)")
                }) { ScriptInfo($0) }
            }
        }
        router.delete("/v1/scripts/:name") { request, context in
            try await customerRoute(request) { customer in
                let name = context.parameters.get("name") ?? ""
                switch await offQueue({ supervisor.deleteScript(customer: customer.name, name: name, actor: "customer:\(customer.name)") }) {
                case .success: return Response(status: .noContent)
                case .failure(let error): return failure(error)
                }
            }
        }

        // MARK: Admin routes
        router.get("/v1/admin/status") { request, _ in
            try await adminRoute(request) { json(supervisor.currentStatus()) }
        }
        router.get("/v1/admin/customers") { request, _ in
            try await adminRoute(request) {
                respond(await offQueue { supervisor.listCustomers() }) { CustomerList(customers: $0.map(CustomerInfo.init)) }
            }
        }
        router.post("/v1/admin/customers") { request, _ in
            try await adminRoute(request) {
                let body = (try? await request.body.collect(upTo: 4096)) ?? ByteBuffer()
                guard let create = try? JSONDecoder().decode(CreateCustomer.self, from: Data(buffer: body)) else {
                    return failure(ControlError(status: 400, kind: "invalid", message: "the body must be {\"name\": …, \"cohort\": …}"))
                }
                switch await offQueue({ supervisor.addCustomer(name: create.name, cohort: create.cohort, actor: "admin-api") }) {
                case .success(let (customer, token)):
                    return json(NewCustomer(name: customer.name, cohort: customer.cohort, token: token), status: .created)
                case .failure(let error):
                    return failure(error)
                }
            }
        }
        router.get("/v1/admin/rollouts") { request, _ in
            try await adminRoute(request) {
                let records = await offQueue { supervisor.rolloutSummaries() }
                return respond(records) { RolloutList(rollouts: $0) }
            }
        }
        router.post("/v1/admin/rollouts") { request, _ in
            try await adminRoute(request) {
                let body = (try? await request.body.collect(upTo: Self.maxBodyBytes)) ?? ByteBuffer()
                guard let start = try? JSONDecoder().decode(StartRollout.self, from: Data(buffer: body)),
                      let kind = ArtifactKind(rawValue: start.kind)
                else {
                    return failure(ControlError(status: 400, kind: "invalid",
                                                message: "the body must be {\"kind\": \"runtime|rules|binary\", \"content\": …}"))
                }
                switch await offQueue({ supervisor.startRollout(kind: kind, content: start.content, actor: "admin-api") }) {
                case .success(let id): return json(RolloutCreated(id: id), status: .created)
                case .failure(let error): return failure(error)
                }
            }
        }
        router.get("/v1/admin/rollouts/:id") { request, context in
            try await adminRoute(request) {
                let id = context.parameters.get("id").flatMap { Int($0) } ?? -1
                return respond(await offQueue { supervisor.rolloutStatus(id: id) }) { $0 }
            }
        }
        router.post("/v1/admin/rollouts/:id/:command") { request, context in
            try await adminRoute(request) {
                let id = context.parameters.get("id").flatMap { Int($0) } ?? -1
                let command = context.parameters.get("command") ?? ""
                guard ["pause", "resume", "abort", "promote"].contains(command) else {
                    return failure(ControlError(status: 404, kind: "not-found", message: "no rollout command '\(command)'"))
                }
                return respond(await offQueue { supervisor.operate(rollout: id, command: command, actor: "admin-api") }) { $0 }
            }
        }
        router.post("/v1/admin/scripts/:customer/:name/unquarantine") { request, context in
            try await adminRoute(request) {
                let customer = context.parameters.get("customer") ?? ""
                let name = context.parameters.get("name") ?? ""
                switch await offQueue({ supervisor.releaseQuarantine(customer: customer, name: name) }) {
                case .success: return json(Released(released: "\(customer)/\(name)"))
                case .failure(let error): return failure(error)
                }
            }
        }
    }

    // MARK: Authentication

    private func bearer(_ request: Request) -> String? {
        guard let value = request.headers[.authorization] else { return nil }
        let prefix = "Bearer "
        guard value.hasPrefix(prefix) else { return nil }
        let token = value.dropFirst(prefix.count).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    private func customerRoute(_ request: Request, _ body: (Customer) async throws -> Response) async throws -> Response {
        guard let token = bearer(request) else {
            return failure(ControlError(status: 401, kind: "unauthorized", message: "send Authorization: Bearer TOKEN (your customer token)"))
        }
        guard let customer = await offQueue({ supervisor.authenticate(token: token) }) else {
            return failure(ControlError(status: 401, kind: "unauthorized", message: "the token is not valid"))
        }
        return try await body(customer)
    }

    private func adminRoute(_ request: Request, _ body: () async throws -> Response) async throws -> Response {
        guard let token = bearer(request), supervisor.isAdminToken(token) else {
            return failure(ControlError(status: 401, kind: "unauthorized", message: "send Authorization: Bearer ADMIN_TOKEN (DATA/admin.token)"))
        }
        return try await body()
    }
}

/// Runs a blocking supervisor call off Swift's cooperative threads (there are only
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

func failure(_ error: ControlError) -> Response {
    json(ErrorBody(error: error.kind, message: error.message), status: HTTPResponse.Status(code: error.status))
}

func respond<T, U: Encodable>(_ result: Result<T, ControlError>, _ transform: (T) -> U) -> Response {
    switch result {
    case .success(let value): json(transform(value))
    case .failure(let error): failure(error)
    }
}

/// Answers 405 with `Allow` for a known path asked with a method it does not take
/// (the router alone would say 404, as if the path did not exist).
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Path patterns (one segment per `*`) and the methods they take.
    static var routes: [(pattern: [String], methods: String)] {
        [
            ([], "GET"), (["healthz"], "GET"), (["metrics"], "GET"), (["openapi.yaml"], "GET"),
            (["v1", "scripts"], "GET"), (["v1", "scripts", "*"], "GET, PUT, DELETE"),
            (["v1", "scripts", "*", "versions"], "GET"), (["v1", "scripts", "*", "logs"], "GET"),
            (["v1", "scripts", "*", "rollback"], "POST"), (["v1", "admin", "status"], "GET"),
            (["v1", "admin", "customers"], "GET, POST"), (["v1", "admin", "rollouts"], "GET, POST"),
            (["v1", "admin", "rollouts", "*"], "GET"), (["v1", "admin", "rollouts", "*", "*"], "POST"), (["v1", "admin", "scripts", "*", "*", "unquarantine"], "POST"),
        ]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let segments = request.uri.path.split(separator: "/").map(String.init)
            guard let route = Self.routes.first(where: { route in
                route.pattern.count == segments.count
                    && zip(route.pattern, segments).allSatisfy { $0 == "*" || $0 == $1 }
            }) else { throw error }
            var response = failure(ControlError(
                status: 405, kind: "method-not-allowed", message: "\(request.method) is not allowed here; use \(route.methods)"))
            response.headers[.allow] = route.methods
            return response
        }
    }
}
