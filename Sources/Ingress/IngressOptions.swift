#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import HTTPWire
import NIOCore

/// How `bulkhead ingress` runs. The defaults are the production values; tests shorten
/// the timeouts.
public struct IngressOptions: Sendable {
    /// The routing table the supervisor writes: `DATA/run/routes.json`.
    public var routesFile: String
    /// The inherited listening TCP socket (3 when the supervisor starts the ingress).
    /// The ingress accepts from it and never closes it: its owner does.
    public var listenFD: Int32
    /// Event loop threads. Each client connection and the upstream connections it
    /// uses live on one loop, so a request never changes thread. One is plenty next
    /// to the pools on a small machine.
    public var eventLoopThreads: Int = 1
    /// Limits on client requests. The body limit is used only while the routing table
    /// gives no body limits (a table from an older supervisor): then it must cover the
    /// largest cohort's `max_body_kb` (enterprise: 8 MiB). Otherwise a body is held to
    /// its customer's pool's limit, and one not yet routed to the largest pool's.
    public var parserLimits = HTTPParserLimits(maxBodyBytes: 8 * 1024 * 1024)
    /// Answers a client has not read, held by the ingress (past what the socket took):
    /// over `high`, the ingress takes no further request from that client and stops
    /// reading from it and from its pool connection, until the client reads them down
    /// to `low`. Bounds what a client that pipelines without reading makes it hold.
    public var clientWriteBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 * 1024, high: 64 * 1024)
    /// After refusing a request whose rest it will not read (a body over the limit,
    /// malformed framing), the ingress closes its sending side and drops what the
    /// client still sends for up to this long before closing: closing with unread
    /// bytes would reset the connection, and the client could lose the answer.
    public var lingerTimeout = TimeAmount.seconds(1)
    /// The longest upstream response head accepted.
    public var maxResponseHeadBytes = 64 * 1024
    /// Idle upstream connections kept per pool port and event loop; more are closed
    /// when they come back.
    public var maxIdleUpstreamConnections = 64
    /// An idle upstream connection is closed after this long, well before a worker's
    /// own 60 s idle timeout, so the ingress rarely reuses one the worker is closing.
    public var upstreamIdleTimeout = TimeAmount.seconds(20)
    /// How long connecting to a pool may take before the request gets a 502.
    public var upstreamConnectTimeout = TimeAmount.seconds(1)
    /// How long an upstream may stay silent during a request before the client gets
    /// a 504 (a worker's watchdog ends a runaway script well before this).
    public var upstreamResponseTimeout = TimeAmount.seconds(30)
    /// A reused upstream connection that closes before any response byte is retried
    /// once on a fresh connection, if it closed within this long of the request being
    /// sent: a worker closing an idle connection does so before it reads the request,
    /// within a round trip. A worker that dies later (its watchdog ended a runaway
    /// script) may have run the request: that is not retried, so a script cannot end
    /// two workers with one request.
    public var retryWindow = TimeAmount.milliseconds(250)
    /// How long a started request may take to arrive in full (slowloris): 408.
    public var requestArrivalTimeout = TimeAmount.seconds(10)
    /// How long a keep-alive client connection may sit idle.
    public var clientIdleTimeout = TimeAmount.seconds(60)
    /// How often the routes file is checked for a change.
    public var routesPollInterval = Duration.milliseconds(50)
    /// The largest routes file read; a larger one is refused (last table kept).
    public var maxRoutesFileBytes = RoutingTable.defaultMaxFileBytes
    /// How long a drain (SIGTERM) waits for in-flight requests before exiting anyway.
    public var drainTimeout = TimeAmount.seconds(30)
    /// Where log lines go (never one per request). Standard error by default.
    public var log: @Sendable (String) -> Void = { line in IngressLog.standardError(line) }

    /// Options for `bulkhead ingress --data DIR`: routes from `DIR/run/routes.json`,
    /// the listening socket on descriptor 3.
    public init(data: DataDirectory, listenFD: Int32 = 3) {
        self.routesFile = data.run + "/routes.json"
        self.listenFD = listenFD
    }

    /// Options with an explicit routes file and listening socket (tests).
    public init(routesFile: String, listenFD: Int32) {
        self.routesFile = routesFile
        self.listenFD = listenFD
    }
}

/// The ingress's log: lines to standard error.
public enum IngressLog {
    /// Writes `line` and a newline to standard error in one call.
    public static func standardError(_ line: String) {
        var text = line
        text += "\n"
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(2, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
