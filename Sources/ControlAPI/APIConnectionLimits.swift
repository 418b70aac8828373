/// How many connections the control API holds, how many one address may hold, and
/// how long a connection may take to send a request.
///
/// The API runs inside the supervisor, so its connections use the descriptors the
/// supervisor needs to replace workers: 20,000 idle connections once used them all
/// and a killed worker was not replaced. The cap is therefore computed from the
/// descriptor limit so that the supervisor's reserve stays free, whatever is asked.
public struct APIConnectionLimits: Sendable, Equatable {
    /// Connections held at once; a new one beyond it displaces the longest idle one
    /// (see `APIConnectionTable`), or is closed at once.
    public var maxConnections: Int
    /// Connections one peer address may hold at once (loopback included).
    public var maxPerPeer: Int
    /// Seconds a connection may stay without a request in progress, from its accept
    /// to its first complete request head and between requests; then it is closed.
    public var headTimeout: Double

    /// The default head timeout, in seconds.
    public static let defaultHeadTimeout = 5.0
    /// The most connections the default allows, however high the descriptor limit.
    public static let defaultCeiling = 1024
    /// The most connections per address the default allows.
    public static let defaultPerPeerCeiling = 256

    /// The budget of each of the host's Unix sockets (`control.sock`, `admin.sock`):
    /// its own, never shared with TCP or with the other socket, so a flood of the TCP
    /// listener (or a runaway script of the operator's on one socket) leaves the
    /// other ways in open. Their peers are this user or root, so there is no second
    /// address to share with: one peer may hold the whole budget. `serve` keeps
    /// both budgets' descriptors free of the TCP cap.
    public static let localSocket = APIConnectionLimits(maxConnections: 16, maxPerPeer: 16)

    /// Connections open at once counting those displaced and still closing: at it
    /// the server stops accepting until closes catch up (newcomers wait in the
    /// listen backlog), so the descriptors the API holds are bounded, bursts included.
    public var acceptCeiling: Int { maxConnections + max(4, maxConnections / 8) }

    /// Limits as given.
    public init(maxConnections: Int, maxPerPeer: Int, headTimeout: Double = Self.defaultHeadTimeout) {
        self.maxConnections = max(1, maxConnections)
        self.maxPerPeer = max(1, min(maxPerPeer, self.maxConnections))
        self.headTimeout = headTimeout
    }

    /// The limits for a process allowed `descriptorLimit` descriptors, of which
    /// `descriptorsInUse` are open and `reserved` must stay free.
    ///
    /// By default the cap is the smallest of 1024, a quarter of the limit and what
    /// the reserve leaves; one address may hold half the cap, at most 256, so no
    /// single client can fill it. An operator's `maxConnections` is kept within what
    /// the reserve leaves too, with a warning that says so.
    public static func resolve(
        maxConnections requested: Int?, maxPerPeer requestedPerPeer: Int?, headTimeout: Double?,
        descriptorLimit: Int, descriptorsInUse: Int, reserved: Int
    ) -> (limits: APIConnectionLimits, warnings: [String]) {
        var warnings: [String] = []
        let budget = descriptorLimit - descriptorsInUse - reserved
        if budget < 6 {
            warnings.append(
                "the descriptor limit (\(descriptorLimit), \(descriptorsInUse) in use) leaves nothing for the control API "
                    + "beyond the \(reserved) kept for the workers; it holds one connection at a time: raise `ulimit -n`")
        }
        // The most connections whose `acceptCeiling` still fits in the budget.
        let room = max(1, (budget - 4) * 8 / 9)
        let cap: Int
        if let requested {
            cap = min(requested, room)
            if requested > room {
                warnings.append(
                    "--api-max-connections \(requested) would leave too few descriptors for the workers "
                        + "(limit \(descriptorLimit), \(descriptorsInUse) in use, \(reserved) kept free); using \(cap)")
            }
        } else {
            cap = max(1, min(defaultCeiling, descriptorLimit / 4, room))
        }
        let perPeer = requestedPerPeer ?? min(defaultPerPeerCeiling, max(1, cap / 2))
        return (APIConnectionLimits(maxConnections: cap, maxPerPeer: perPeer, headTimeout: headTimeout ?? defaultHeadTimeout),
                warnings)
    }
}
