/// What the ingress has done since it started, summed over its event loops.
/// Counted on the loops without locks; `IngressServer.stats()` gathers them.
public struct IngressStats: Hashable, Sendable {
    /// Client connections accepted.
    public var clientConnections = 0
    /// Client connections open now.
    public var openClientConnections = 0
    /// Whole requests received from clients (malformed ones included).
    public var requests = 0
    /// Responses relayed whole from a pool.
    public var responses = 0
    /// Requests answered by the ingress itself with 400, 408, 413, 431, 501 or 505:
    /// the request was malformed or too large.
    public var badRequests = 0
    /// Requests answered 404 `no-script`: no customer named, or one the table does
    /// not know.
    public var unknownCustomers = 0
    /// Requests answered 502 `bad-gateway`: the pool could not be reached, closed
    /// before answering, answered something that is not HTTP, or has no port.
    public var badGateways = 0
    /// Requests answered 504 `gateway-timeout`: the pool stayed silent too long.
    public var gatewayTimeouts = 0
    /// Responses cut off when the pool's connection broke mid-response: the client's
    /// connection was closed, as the pool's was.
    public var brokenResponses = 0
    /// Requests sent again on a fresh connection after a reused one closed unread.
    public var retries = 0
    /// Connections opened to pools.
    public var upstreamConnectionsOpened = 0
    /// Requests sent on an idle, reused upstream connection.
    public var upstreamConnectionsReused = 0
    /// The routing table's version in force; nil before the first one loaded.
    public var routesVersion: Int?

    /// All zero.
    public init() {}

    /// Every request the ingress failed: bad requests, unknown customers, bad
    /// gateways, timeouts and broken responses.
    public var failures: Int {
        badRequests + unknownCustomers + badGateways + gatewayTimeouts + brokenResponses
    }

    /// Adds another loop's counts (the routes version is the server's own).
    mutating func add(_ other: IngressStats) {
        clientConnections += other.clientConnections
        openClientConnections += other.openClientConnections
        requests += other.requests
        responses += other.responses
        badRequests += other.badRequests
        unknownCustomers += other.unknownCustomers
        badGateways += other.badGateways
        gatewayTimeouts += other.gatewayTimeouts
        brokenResponses += other.brokenResponses
        retries += other.retries
        upstreamConnectionsOpened += other.upstreamConnectionsOpened
        upstreamConnectionsReused += other.upstreamConnectionsReused
    }
}
