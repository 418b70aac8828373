import BulkheadCore
import Foundation
import Hummingbird
import Supervisor

/// The host's own routes, served on `DATA/run/admin.sock` only: status, break glass,
/// pool scale, script logs and quarantines, metrics. They take no token (the socket's peers are checked at
/// accept: this uid or root), so they work when the control API is down or flooded,
/// and they answer with the same Codable bodies as the control API.
public enum HostRoutes {
    /// One host route.
    public struct Route: Sendable {
        /// The HTTP method.
        public let method: HTTPRequest.Method
        /// The path, Hummingbird's `:parameter` syntax.
        public let path: String
        let handler: @Sendable (HostOperations, Request, BasicRequestContext) async throws -> Response

        /// The path as openapi.yaml writes it: `/v1/host/pools/{name}/scale`.
        public var specPath: String {
            ControlAPI.specPath(path)
        }
    }

    /// The router `admin.sock` serves.
    public static func router(operations: HostOperations) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIErrorMiddleware(table: routes.map { ($0.method, $0.path) }))
        for route in routes {
            router.on(RouterPath(route.path), method: route.method) { request, context in
                try await route.handler(operations, request, context)
            }
        }
        return router
    }

    /// Every host route.
    public static let routes: [Route] = [
        Route(method: .get, path: "/v1/host/status") { operations, _, _ in
            json(operations.status())
        },
        Route(method: .get, path: "/v1/host/break-glass") { operations, _, _ in
            json(try await operations.breakGlass())
        },
        Route(method: .post, path: "/v1/host/break-glass/freeze") { operations, request, _ in
            let change = try await change(request)
            return json(try await operations.setFrozen(true, actor: change.actor ?? "break-glass"))
        },
        Route(method: .post, path: "/v1/host/break-glass/unfreeze") { operations, request, _ in
            let change = try await change(request)
            return json(try await operations.setFrozen(false, actor: change.actor ?? "break-glass"))
        },
        Route(method: .post, path: "/v1/host/break-glass/plan") { operations, request, _ in
            json(try await operations.plan(try await rollback(request)))
        },
        Route(method: .post, path: "/v1/host/break-glass/rollback") { operations, request, _ in
            let rollback = try await rollback(request)
            return json(try await operations.rollback(rollback, actor: rollback.actor ?? "break-glass"))
        },
        Route(method: .post, path: "/v1/host/break-glass/unpin") { operations, request, _ in
            let unpin = try await ControlAPI.decode(
                BreakGlassUnpin.self, request, limit: 4096, "the body must be {\"kind\": \"runtime|rules|binary\"}")
            return json(try await operations.unpin(unpin.kind, actor: unpin.actor ?? "break-glass"))
        },
        Route(method: .post, path: "/v1/host/pools/:name/scale") { operations, request, context in
            let scale = try await ControlAPI.decode(ScalePool.self, request, limit: 4096, "the body must be {\"workers\": N}")
            return json(try await operations.scale(pool: ControlAPI.parameter("name", context), workers: scale.workers))
        },
        Route(method: .get, path: "/v1/host/scripts/:customer/:name/logs") { operations, _, context in
            json(try await operations.logs(of: ControlAPI.parameter("customer", context), name: ControlAPI.parameter("name", context)))
        },
        Route(method: .post, path: "/v1/host/scripts/:customer/:name/unquarantine") { operations, _, context in
            json(try await operations.releaseQuarantine(
                of: ControlAPI.parameter("customer", context), name: ControlAPI.parameter("name", context)))
        },
        Route(method: .get, path: "/v1/host/metrics") { operations, _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: await operations.metricsText())))
        },
    ]

    /// A freeze or unfreeze body: empty, or `{"actor": …}`.
    static func change(_ request: Request) async throws(ControlError) -> BreakGlassChange {
        let body = (try? await request.body.collect(upTo: 4096)) ?? ByteBuffer()
        guard body.readableBytes > 0 else { return BreakGlassChange(actor: nil) }
        guard let change = try? JSONDecoder().decode(BreakGlassChange.self, from: Data(buffer: body)) else {
            throw ControlError(.invalid, "the body must be empty or {\"actor\": …}")
        }
        return change
    }

    static func rollback(_ request: Request) async throws(ControlError) -> BreakGlassRollback {
        try await ControlAPI.decode(BreakGlassRollback.self, request, limit: 4096,
                                    "the body must be {\"kind\": \"runtime|rules|binary\", \"version\": N, \"allow_rejected\": false}")
    }
}
