import Synchronization

/// A load run in progress: connections on their own threads sending requests to
/// the targets until the stop condition, or until `stop()`.
///
/// ```swift
/// let run = try LoadRun.start(configuration)
/// // … kill a worker …
/// let live = run.snapshot()      // counts so far
/// let report = run.stop()        // waits for the requests in flight
/// ```
///
/// Stopping never abandons a request: each one in flight finishes (or fails at its
/// read timeout) and is counted, so a final report has an outcome for every
/// request it started.
public final class LoadRun: Sendable {
    /// The configuration the run was started with.
    public let configuration: LoadConfiguration

    private let control: RunControl
    private let targets: [PreparedTarget]
    private let connections: [LoadConnection]
    private let startedAt: Double
    private let completion: Mutex<Completion>
    private let finishedSignal = Event()

    /// Threads still running, and who waits for the last of them.
    private struct Completion {
        var running: Int
        var finishedAt: UInt64?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private init(configuration: LoadConfiguration, targets: [PreparedTarget]) {
        self.configuration = configuration
        self.targets = targets
        var connections: [LoadConnection] = []
        for index in targets.indices {
            for number in 0..<configuration.connectionsPerTarget {
                connections.append(LoadConnection(targetIndex: index, number: number))
            }
        }
        self.connections = connections
        self.completion = Mutex(Completion(running: connections.count))
        self.startedAt = MonotonicClock.wallSeconds()
        self.control = RunControl(stop: configuration.stop, bucketWidth: configuration.timelineBucket.clampedNanoseconds)
    }

    // MARK: - Running

    /// Checks `configuration` and starts its connections in the background.
    ///
    /// Throws `LoadConfigurationError` for a configuration that cannot run, and
    /// `LoadRunError` if the threads cannot be started.
    public static func start(_ configuration: LoadConfiguration) throws -> LoadRun {
        let targets = try configuration.preparedTargets()
        let run = LoadRun(configuration: configuration, targets: targets)
        // Clamped: a rate of 1e-15/s must not trap converting 1e24 ns to UInt64.
        let interval = configuration.ratePerConnection.map { UInt64(min((1e9 / $0).rounded(), 1e18)) }
        for (index, connection) in run.connections.enumerated() {
            let loop = ConnectionLoop(
                control: run.control,
                target: targets[connection.targetIndex],
                connection: connection,
                connectTimeout: configuration.connectTimeout.clampedNanoseconds,
                readTimeout: configuration.readTimeout.clampedNanoseconds,
                reconnectDelay: configuration.reconnectDelay.clampedNanoseconds,
                interval: interval.map { max(1, $0) }
            )
            if let code = PosixThread.detach({
                loop.run()
                run.connectionEnded()
            }) {
                // Wind down what did start, so no thread outlives the error.
                run.requestStop()
                for _ in index..<run.connections.count { run.connectionEnded() }
                _ = run.wait()
                throw LoadRunError.cannotStartThread(started: index, wanted: run.connections.count, reason: errorText(code))
            }
        }
        return run
    }

    /// Runs `configuration` to its stop condition and returns the final report,
    /// blocking the calling thread.
    public static func run(_ configuration: LoadConfiguration) throws -> LoadReport {
        try start(configuration).wait()
    }

    /// Whether every connection has finished.
    public var isFinished: Bool {
        completion.withLock { $0.finishedAt != nil }
    }

    /// Counts so far; cheap enough to poll every few milliseconds.
    public func snapshot() -> LoadReport {
        makeReport(finishedAt: completion.withLock { $0.finishedAt })
    }

    /// Asks every connection to start no further request, without waiting.
    public func requestStop() {
        control.stopSignal.set()
    }

    /// Stops the run and returns the final report once the requests in flight
    /// have their outcomes (at most the read timeout later). Blocks the calling
    /// thread; from async code prefer `requestStop()` and `finished()`.
    public func stop() -> LoadReport {
        requestStop()
        return wait()
    }

    /// Blocks until the run has finished (its bound, or a stop) and returns the
    /// final report.
    public func wait() -> LoadReport {
        finishedSignal.wait(until: nil)
        return snapshot()
    }

    /// Waits, without blocking a thread, until the run has finished and returns
    /// the final report. Cancelling the waiting task stops the run.
    public func finished() async -> LoadReport {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = completion.withLock { state in
                    if state.finishedAt != nil { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            requestStop()
        }
        return snapshot()
    }

    /// Called by each connection's thread as its last act.
    private func connectionEnded() {
        let waiters: [CheckedContinuation<Void, Never>]? = completion.withLock { state in
            state.running -= 1
            guard state.running == 0 else { return nil }
            state.finishedAt = MonotonicClock.now()
            defer { state.waiters = [] }
            return state.waiters
        }
        guard let waiters else { return }
        finishedSignal.set()
        for waiter in waiters { waiter.resume() }
    }

    // MARK: - Reports

    private func makeReport(finishedAt: UInt64?) -> LoadReport {
        let end = finishedAt ?? MonotonicClock.now()
        let elapsed = end &- control.start
        var tallies = Array(repeating: ConnectionTally(), count: targets.count)
        for connection in connections {
            // Copy under the lock, merge outside it, so the connection waits only
            // for the copy.
            let tally = connection.tally.withLock { $0 }
            tallies[connection.targetIndex].merge(tally)
        }
        let bucketCount = max(
            tallies.map(\.timeline.count).max() ?? 0,
            Int((elapsed + control.bucketWidth - 1) / control.bucketWidth)
        )
        let reports = zip(targets, tallies).map { target, tally in
            makeTargetReport(target, tally, bucketCount: bucketCount)
        }
        return LoadReport(
            finished: finishedAt != nil,
            startedAt: startedAt,
            elapsedSeconds: Double(elapsed) / 1e9,
            settings: LoadReport.Settings(
                connectionsPerTarget: configuration.connectionsPerTarget,
                ratePerConnection: configuration.ratePerConnection,
                durationLimitSeconds: configuration.stop.duration?.seconds,
                requestLimit: configuration.stop.requests,
                connectTimeoutSeconds: configuration.connectTimeout.seconds,
                readTimeoutSeconds: configuration.readTimeout.seconds
            ),
            targets: reports
        )
    }

    private func makeTargetReport(_ prepared: PreparedTarget, _ tally: ConnectionTally, bucketCount: Int) -> TargetReport {
        let target = prepared.target
        let bucketMilliseconds = Int(control.bucketWidth / 1_000_000)
        let timeline = (0..<bucketCount).map { index in
            let bucket = index < tally.timeline.count ? tally.timeline[index] : ConnectionTally.Bucket()
            return TimelineBucket(startMilliseconds: index * bucketMilliseconds, ok: bucket.ok, failed: bucket.failed)
        }
        let histogram = tally.latency
        func milliseconds(_ microseconds: UInt64?) -> Double? {
            microseconds.map { Double($0) / 1000 }
        }
        let latency = LatencySummary(
            count: histogram.count,
            minMilliseconds: histogram.count > 0 ? milliseconds(histogram.minMicroseconds) : nil,
            meanMilliseconds: histogram.count > 0 ? Double(histogram.sumMicroseconds) / Double(histogram.count) / 1000 : nil,
            p50Milliseconds: milliseconds(histogram.percentile(0.50)),
            p90Milliseconds: milliseconds(histogram.percentile(0.90)),
            p99Milliseconds: milliseconds(histogram.percentile(0.99)),
            maxMilliseconds: histogram.count > 0 ? milliseconds(histogram.maxMicroseconds) : nil
        )
        return TargetReport(
            label: target.label,
            address: "\(target.host):\(target.port)",
            method: target.method,
            path: target.path,
            hostHeader: target.effectiveHostHeader,
            connections: configuration.connectionsPerTarget,
            attempts: tally.attempts,
            sent: tally.sent,
            completed: tally.completed,
            inFlight: tally.attempts - tally.finished,
            ok: tally.ok,
            statuses: tally.statuses.keys.sorted().map { status in
                let counts = tally.statuses[status] ?? ConnectionTally.StatusTally()
                return StatusCount(status: status, count: counts.count, errorKinds: counts.errorKinds.counts)
            },
            failures: tally.failures,
            connectionsOpened: tally.connectionsOpened,
            idleClosed: tally.idleClosed,
            latency: latency,
            workers: tally.workers.counts,
            pools: tally.pools.counts,
            timelineBucketMilliseconds: bucketMilliseconds,
            timeline: timeline,
            failureDetails: tally.details.counts
        )
    }
}
