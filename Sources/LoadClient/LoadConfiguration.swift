/// Settings of one load run: what to load, how hard, and for how long.
public struct LoadConfiguration: Sendable, Hashable {
    /// The addresses to load, each with its own connections and counts.
    public var targets: [LoadTarget]
    /// Connections (and threads) per target.
    public var connectionsPerTarget: Int
    /// When the run ends by itself.
    public var stop: StopCondition
    /// Requests per second per connection; nil sends the next request as soon as
    /// the previous one is done. Pacing keeps "steady traffic" from taking the
    /// cores the server under test needs.
    public var ratePerConnection: Double?
    /// Time allowed to open a connection before it counts as `connect`.
    public var connectTimeout: Duration
    /// Time allowed for a whole response, from the first byte sent, before it
    /// counts as `timeout`.
    public var readTimeout: Duration
    /// Pause after a failed connect before the connection's next request, so a
    /// server that is down is not hammered with connects.
    public var reconnectDelay: Duration
    /// Width of a timeline bucket, in whole milliseconds (rounded down).
    public var timelineBucket: Duration

    /// Creates a configuration; the defaults suit a test against a local server.
    public init(
        targets: [LoadTarget],
        connectionsPerTarget: Int = 1,
        stop: StopCondition,
        ratePerConnection: Double? = nil,
        connectTimeout: Duration = .seconds(1),
        readTimeout: Duration = .seconds(2),
        reconnectDelay: Duration = .milliseconds(20),
        timelineBucket: Duration = .milliseconds(100)
    ) {
        self.targets = targets
        self.connectionsPerTarget = connectionsPerTarget
        self.stop = stop
        self.ratePerConnection = ratePerConnection
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.reconnectDelay = reconnectDelay
        self.timelineBucket = timelineBucket
    }

    /// The most connections a run opens over all targets: each is a thread, and
    /// the machines this runs on have two cores.
    public static let maxConnections = 1024

    /// Checks every setting and target; `LoadRun.start` calls this.
    public func validate() throws(LoadConfigurationError) {
        _ = try preparedTargets()
    }

    /// The targets, checked and turned into what the connections need.
    func preparedTargets() throws(LoadConfigurationError) -> [PreparedTarget] {
        guard !targets.isEmpty else { throw .noTargets }
        guard connectionsPerTarget >= 1 else {
            throw .invalidSetting(name: "connections", reason: "must be at least 1, got \(connectionsPerTarget)")
        }
        guard connectionsPerTarget <= Self.maxConnections, connectionsPerTarget * targets.count <= Self.maxConnections else {
            throw .invalidSetting(
                name: "connections",
                reason: "\(connectionsPerTarget) per target × \(targets.count) targets is over \(Self.maxConnections)"
            )
        }
        if let rate = ratePerConnection, !(rate.isFinite && rate > 0) {
            throw .invalidSetting(name: "rate", reason: "must be a positive number of requests per second, got \(rate)")
        }
        for (name, value) in [("connect timeout", connectTimeout), ("read timeout", readTimeout), ("timeline bucket", timelineBucket)]
        where value.clampedNanoseconds < 1_000_000 {
            throw .invalidSetting(name: name, reason: "must be at least 1 ms, got \(value)")
        }
        var labels = Set<String>()
        var prepared: [PreparedTarget] = []
        for target in targets {
            guard labels.insert(target.label).inserted else { throw .duplicateLabel(target.label) }
            prepared.append(try PreparedTarget(target))
        }
        return prepared
    }
}
