import Synchronization

/// What every connection of a run shares: when it started, when it must end, the
/// request budget, and the stop signal.
final class RunControl: Sendable {
    /// `MonotonicClock` time of the start.
    let start: UInt64
    /// `MonotonicClock` time after which no request starts.
    let deadline: UInt64?
    /// Requests the run may start over all targets.
    let requestLimit: Int?
    /// Width of a timeline bucket in nanoseconds.
    let bucketWidth: UInt64
    /// Set by `LoadRun.requestStop()`, or when the request budget is spent.
    let stopSignal = Event()
    private let claimed = Atomic<Int>(0)

    init(stop: StopCondition, bucketWidth: UInt64) {
        let start = MonotonicClock.now()
        self.start = start
        self.deadline = stop.duration.map { start &+ $0.clampedNanoseconds }
        self.requestLimit = stop.requests
        // Whole milliseconds, so the report's bucket starts are exact.
        self.bucketWidth = max(1, bucketWidth / 1_000_000) * 1_000_000
    }

    /// Takes the right to start one more request; false once the run must end.
    func claim() -> Bool {
        if stopSignal.isSet { return false }
        if let deadline, MonotonicClock.now() >= deadline { return false }
        guard let requestLimit else { return true }
        let number = claimed.wrappingAdd(1, ordering: .relaxed).newValue
        // The last request of the budget wakes the paced connections now rather
        // than at their next slot; the request itself still goes out.
        if number >= requestLimit { stopSignal.set() }
        return number <= requestLimit
    }

    /// Sleeps until `time` or the deadline, whichever is first; returns true if
    /// the run was stopped meanwhile.
    func sleep(until time: UInt64) -> Bool {
        let until = deadline.map { min($0, time) } ?? time
        return stopSignal.wait(until: until)
    }

    /// The timeline bucket that `time` falls in.
    func bucket(at time: UInt64) -> Int {
        Int((time &- start) / bucketWidth)
    }
}
