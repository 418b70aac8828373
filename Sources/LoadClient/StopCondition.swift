/// When a run ends by itself. There is no unbounded run: every way to make one
/// sets a duration, a request count, or both.
public struct StopCondition: Sendable, Hashable {
    /// Stop starting requests once this much time has passed since the start.
    public let duration: Duration?
    /// Stop after this many requests over all targets (each connect failure counts
    /// as one: it is a request that failed).
    public let requests: Int?

    private init(duration: Duration?, requests: Int?) {
        self.duration = duration
        self.requests = requests.map { max(0, $0) }
    }

    /// Run for `duration`.
    public static func duration(_ duration: Duration) -> StopCondition {
        StopCondition(duration: duration, requests: nil)
    }

    /// Run until `count` requests were started.
    public static func requests(_ count: Int) -> StopCondition {
        StopCondition(duration: nil, requests: count)
    }

    /// Run until `duration` has passed or `requests` were started, whichever
    /// comes first.
    public static func first(duration: Duration, requests: Int) -> StopCondition {
        StopCondition(duration: duration, requests: requests)
    }
}
