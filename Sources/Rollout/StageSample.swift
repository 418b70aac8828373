import BulkheadCore

/// What the supervisor measured for a set of workers over one time window: the
/// input of the health gate, for a stage and for its baseline alike.
///
/// Counts are of the window only (differences of the workers' cumulative
/// counters), never since the workers started.
public struct StageSample: Codable, Sendable, Equatable {
    /// Requests answered in the window.
    public var requests: Int
    /// Platform errors: throws or limit hits in the runtime or a rule, artifacts that
    /// failed to load, worker crashes while serving.
    public var platformErrors: Int
    /// Customer script errors (`script-error` and the script's own limit hits).
    public var scriptErrors: Int
    /// Error signatures (`ErrorSignature.normalize`) with their counts in the window.
    public var signatures: [String: Int]
    /// Latency of the window's requests, when the supervisor has the histogram.
    public var latency: LatencyHistogram?
    /// The window's p99 latency in milliseconds, when measured directly; it wins over
    /// `latency` when both are present.
    public var p99Milliseconds: Double?
    /// Worker processes of the set that crashed in the window, but for those in
    /// `crashesLeftOut`.
    public var crashes: Int
    /// Crashes of the set in the window that a customer script was already blamed
    /// for (the watchdog named it, or the crashing worker's note did), by script
    /// (`customer/name`): left out of `crashes`, since they say nothing about the
    /// artifact being rolled out, and kept here so the verdict can say so.
    public var crashesLeftOut: [String: Int]

    /// Creates a sample.
    public init(
        requests: Int = 0, platformErrors: Int = 0, scriptErrors: Int = 0, signatures: [String: Int] = [:],
        latency: LatencyHistogram? = nil, p99Milliseconds: Double? = nil, crashes: Int = 0,
        crashesLeftOut: [String: Int] = [:]
    ) {
        self.requests = requests
        self.platformErrors = platformErrors
        self.scriptErrors = scriptErrors
        self.signatures = signatures
        self.latency = latency
        self.p99Milliseconds = p99Milliseconds
        self.crashes = crashes
        self.crashesLeftOut = crashesLeftOut
    }

    /// A sample with nothing in it.
    public static let empty = StageSample()

    /// The p99 latency in milliseconds: the direct value if given, else the
    /// histogram's; nil when neither says anything (no data is not "fast").
    public var p99: Double? {
        if let direct = p99Milliseconds, direct.isFinite, direct >= 0 { return direct }
        return latency?.quantileMilliseconds(0.99)
    }

    /// Adds another set of workers' sample for the same window (one sample per
    /// worker, summed into the stage's).
    ///
    /// Histograms merge exactly. Two p99s cannot be merged, so when either side
    /// carries a direct p99 the result keeps the larger of the two sides' p99s: at
    /// least 99% of each set is at or below its own p99, hence at or below the larger
    /// one, so the max is an upper bound of the union's p99 — the safe side for a gate.
    public mutating func add(_ other: StageSample) {
        let mineP99 = p99
        let theirsP99 = other.p99
        let anyDirect = p99Milliseconds != nil || other.p99Milliseconds != nil
        requests += other.requests
        platformErrors += other.platformErrors
        scriptErrors += other.scriptErrors
        crashes += other.crashes
        for (script, count) in other.crashesLeftOut { crashesLeftOut[script, default: 0] += count }
        for (signature, count) in other.signatures {
            signatures[signature, default: 0] += count
        }
        switch (latency, other.latency) {
        case (.some(var mine), .some(let theirs)):
            mine.add(theirs)
            latency = mine
        case (.none, .some(let theirs)):
            latency = theirs
        default:
            break
        }
        if anyDirect {
            p99Milliseconds = [mineP99, theirsP99].compactMap { $0 }.max()
        }
    }

    /// The signatures seen at least once in the window.
    var presentSignatures: Set<String> {
        Set(signatures.compactMap { $0.value > 0 ? $0.key : nil })
    }
}

// MARK: - From worker counters

extension StageSample {
    /// The counts of `VersionCounts` as a sample (no crashes: those the supervisor
    /// sees, not the worker).
    public init(_ counts: VersionCounts) {
        self.init(
            requests: counts.requests, platformErrors: counts.platformErrors, scriptErrors: counts.scriptErrors,
            signatures: counts.platformSignatures.filter { $0.value > 0 }, latency: counts.latency)
    }

    /// What one worker did in a window under `version` of `kind`, from two of its
    /// cumulative heartbeats: counts made under any other version are left out, so
    /// a count reported late for a version that was rolled back is never charged to
    /// the next rollout's stage, nor to a baseline.
    ///
    /// - Parameters:
    ///   - base: the worker's stats when the window began; nil when the worker
    ///     started inside the window (everything it counted is the window's).
    ///   - current: its latest stats.
    ///   - kind: the rollout's artifact kind. For a kind not counted per version
    ///     (a binary, which a worker runs for its life; a policy) the whole
    ///     difference counts when the worker runs `version`, and nothing otherwise.
    ///   - version: the version whose counts are wanted.
    public static func window(from base: WorkerStats?, to current: WorkerStats, kind: ArtifactKind, version: Int) -> StageSample {
        // Counters that went down belong to another process: start from zero.
        let start = base.flatMap { current.requests >= $0.requests ? $0 : nil }
        if !kind.isCountedPerVersion {
            guard current.versions[kind] == version else { return StageSample(latency: LatencyHistogram()) }
            return StageSample(VersionCounts(totalsOf: current).since(start.map { VersionCounts(totalsOf: $0) }))
        }
        guard let table = current.byVersion else {
            // Not split at all: everything counts under the versions it reports.
            let counts = VersionCounts(totalsOf: current)
            guard counts.version(of: kind) == version else { return StageSample(latency: LatencyHistogram()) }
            return StageSample(counts.since(start.map { VersionCounts(totalsOf: $0) }))
        }
        return window(from: start?.byVersion ?? [], to: table, kind: kind, version: version)
    }

    /// The per-version counts made between two cumulative tables, summed over the
    /// entries whose version of `kind` is `version`.
    public static func window(from base: [VersionCounts], to current: [VersionCounts], kind: ArtifactKind, version: Int) -> StageSample {
        var sample = StageSample(latency: LatencyHistogram())
        for entry in current where entry.version(of: kind) == version {
            sample.add(StageSample(entry.since(base.first { $0.sameVersions(as: entry) })))
        }
        return sample
    }
}
