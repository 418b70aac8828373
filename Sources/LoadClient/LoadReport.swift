/// What a load run counted: per target, live from `LoadRun.snapshot()` or final
/// from `LoadRun.stop()` / `wait()`. Codable, so a test or `bulkhead-load --json`
/// can hand it on as JSON; `summary` is for people.
public struct LoadReport: Sendable, Codable, Equatable {
    /// Whether the run had ended (bound reached or stopped) when this was taken.
    public var finished: Bool
    /// When the run started, in seconds since the Unix epoch.
    public var startedAt: Double
    /// Seconds from the start to the end of the run, or to this snapshot.
    public var elapsedSeconds: Double
    /// The run's settings, for the record.
    public var settings: Settings
    /// One report per target, in the configuration's order.
    public var targets: [TargetReport]

    /// The settings a run used.
    public struct Settings: Sendable, Codable, Equatable {
        /// Connections per target.
        public var connectionsPerTarget: Int
        /// Requests per second per connection, if paced.
        public var ratePerConnection: Double?
        /// The run's duration bound, in seconds.
        public var durationLimitSeconds: Double?
        /// The run's bound on requests, over all targets.
        public var requestLimit: Int?
        /// Connect timeout, in seconds.
        public var connectTimeoutSeconds: Double
        /// Time allowed for each response, in seconds.
        public var readTimeoutSeconds: Double

        /// Creates settings.
        public init(
            connectionsPerTarget: Int, ratePerConnection: Double?, durationLimitSeconds: Double?,
            requestLimit: Int?, connectTimeoutSeconds: Double, readTimeoutSeconds: Double
        ) {
            self.connectionsPerTarget = connectionsPerTarget
            self.ratePerConnection = ratePerConnection
            self.durationLimitSeconds = durationLimitSeconds
            self.requestLimit = requestLimit
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.readTimeoutSeconds = readTimeoutSeconds
        }
    }

    /// Creates a report; the load client fills these in.
    public init(finished: Bool, startedAt: Double, elapsedSeconds: Double, settings: Settings, targets: [TargetReport]) {
        self.finished = finished
        self.startedAt = startedAt
        self.elapsedSeconds = elapsedSeconds
        self.settings = settings
        self.targets = targets
    }

    /// The report of the target labelled `label`.
    public subscript(label: String) -> TargetReport? {
        targets.first { $0.label == label }
    }

    /// Requests started over all targets.
    public var attempts: Int { targets.reduce(0) { $0 + $1.attempts } }
    /// Ok requests over all targets.
    public var ok: Int { targets.reduce(0) { $0 + $1.ok } }
    /// Finished requests that were not ok, over all targets.
    public var failed: Int { targets.reduce(0) { $0 + $1.failed } }
}
