import BulkheadCore
import Hummingbird
import HummingbirdAuth
import Store
import Control

/// Who a request acts as, decided once by `TokenAuthenticator` before any handler
/// runs: handlers take this, never the token.
public enum APIIdentity: Sendable {
    /// The operator: the admin token over TCP, or any allowed peer of `control.sock`
    /// that sends no token.
    case admin
    /// An operator of a fleet, by a session open in the fleet's store (the CLI's
    /// `--etcd`): who opened it.
    case fleetOperator(String)
    /// A customer, by its token; it sees only its own scripts.
    case customer(Customer)
}

/// Which listener a request came in on: the same router serves both, and only the
/// identity of a request without a token differs.
public enum APIListener: Sendable {
    /// TCP (`--api`): every request needs a token.
    case tcp
    /// `DATA/run/control.sock`: its peers are checked at accept (this uid or root),
    /// so a request without a token is the operator.
    case controlSocket
}

/// The request context of the control router: Hummingbird's core storage, the
/// listener, and the identity the authenticator put there.
public struct APIRequestContext: AuthRequestContext, RequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// The authenticated identity; nil until `TokenAuthenticator` sets it.
    public var identity: APIIdentity?
    /// Where the request came in.
    public let listener: APIListener
    /// Whether the request sent a bearer token (set by `TokenAuthenticator`), so a
    /// refusal can say "not valid" rather than "send one".
    public var sentToken = false

    /// A context for a request on `source`'s channel.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        identity = nil
        // A Unix socket has a path where TCP has a port.
        listener = source.channel.localAddress?.pathname != nil ? .controlSocket : .tcp
    }

    /// The operator, or a refusal that says which token to send.
    func requireAdmin() throws(ControlError) {
        switch identity {
        case .admin, .fleetOperator: return
        default: throw ControlError(.unauthorized, "send Authorization: Bearer ADMIN_TOKEN (DATA/admin.token)")
        }
    }

    /// The customer the request acts as, or a refusal that says which token to send.
    func requireCustomer() throws(ControlError) -> Customer {
        guard case .customer(let customer) = identity else {
            throw ControlError(.unauthorized, sentToken ? "the token is not valid" : "send Authorization: Bearer TOKEN (your customer token)")
        }
        return customer
    }
}

/// Turns a bearer token into an `APIIdentity`: the admin token, a customer's token,
/// or, on `control.sock` only, no token at all for the operator. A wrong token is
/// no identity (never the socket's operator): the route then refuses it with 401.
struct TokenAuthenticator: AuthenticatorMiddleware {
    typealias Context = APIRequestContext
    let plane: ControlPlane

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let token = request.headers.bearer?.token.trimmingCharacters(in: .whitespaces) ?? ""
        context.sentToken = !token.isEmpty
        context.identity = try await authenticate(token: token, listener: context.listener)
        return try await next(request, context)
    }

    func authenticate(request: Request, context: Context) async throws -> APIIdentity? {
        try await authenticate(token: request.headers.bearer?.token.trimmingCharacters(in: .whitespaces) ?? "", listener: context.listener)
    }

    private func authenticate(token: String, listener: APIListener) async throws -> APIIdentity? {
        guard !token.isEmpty else { return listener == .controlSocket ? .admin : nil }
        if plane.isAdminToken(token) { return .admin }
        // Tokens say what they are by their prefix: only a customer's is looked up as
        // one, only an operator session's as a session. A host's report token is
        // checked by its route; nothing here reads the store for it.
        if token.hasPrefix(TokenPrefix.operatorSession) {
            return await plane.fleetOperator(token: token).map { .fleetOperator($0) }
        }
        if token.hasPrefix(TokenPrefix.hostReport) { return nil }
        return await offQueue { plane.authenticate(token: token) }.map { .customer($0) }
    }
}
