/// One customer cohort and its pool, as `cohorts/NAME.toml` describes it.
///
/// The pool name is the file name without `.toml`; the file's `name` must agree.
public struct CohortConfiguration: Codable, Sendable, Equatable {
    /// The pool name, also the cohort customers are assigned to.
    public var name: String
    /// Rollout order: lower pools get a platform change first.
    public var order: Int
    /// The pool's port on 127.0.0.1; 0 picks a free one.
    public var port: Int
    /// Worker processes in the pool.
    public var workers: Int
    /// Workers in the first rollout stage; 0 means the whole pool at once.
    public var canaryWorkers: Int
    /// Per-request limits of the pool's scripts.
    public var limits: Limits
    /// The health gate every rollout stage on this pool must pass.
    public var gate: Gate
    /// How the supervisor restarts the pool's workers.
    public var restart: Restart
    /// How customers' script uploads go live (`[deploy]`); nil: immediately.
    public var deploy: ScriptDeployDefaults? = nil

    /// Per-request limits; `memoryMB` caps each script's whole state.
    public struct Limits: Codable, Sendable, Equatable {
        /// Lua instructions one request may run, every coroutine included.
        public var instructions: Int
        /// Memory of one script's state, in MiB.
        public var memoryMB: Int
        /// Wall-clock deadline of one request, in milliseconds.
        public var wallMilliseconds: Int
        /// Largest request body, in KiB.
        public var maxBodyKB: Int
        /// Largest script source, in KiB.
        public var maxScriptKB: Int

        /// Creates limits.
        public init(instructions: Int, memoryMB: Int, wallMilliseconds: Int, maxBodyKB: Int, maxScriptKB: Int) {
            self.instructions = instructions
            self.memoryMB = memoryMB
            self.wallMilliseconds = wallMilliseconds
            self.maxBodyKB = maxBodyKB
            self.maxScriptKB = maxScriptKB
        }
    }

    /// Thresholds of a rollout stage's health gate.
    public struct Gate: Codable, Sendable, Equatable {
        /// Minimum time a stage bakes before it can pass.
        public var bakeSeconds: Double
        /// After this long without a verdict the rollout pauses for an operator.
        public var maxBakeSeconds: Double
        /// Requests a stage needs before any verdict but an immediate failure.
        public var minRequests: Int
        /// Highest platform error rate a stage may have.
        public var maxErrorRate: Double
        /// Highest increase of the error rate over the baseline.
        public var maxErrorRateIncrease: Double
        /// Highest p99 latency, in milliseconds.
        public var maxP99Milliseconds: Double
        /// Error signatures unseen in the baseline that a stage may show.
        public var maxNewSignatures: Int
        /// Worker crashes a stage may see since it began.
        public var maxCrashes: Int
    }

    /// Restart policy: more than `maxRestarts` in `windowSeconds` marks the pool degraded.
    public struct Restart: Codable, Sendable, Equatable {
        /// Restarts allowed within the window before the pool is degraded.
        public var maxRestarts: Int
        /// The sliding window, in seconds.
        public var windowSeconds: Double

        /// Creates a restart policy.
        public init(maxRestarts: Int, windowSeconds: Double) {
            self.maxRestarts = maxRestarts
            self.windowSeconds = windowSeconds
        }
    }
}

extension CohortConfiguration.Limits {
    /// The limits a cohort gets when its file leaves `[limits]` out: those of the free tier.
    public static let defaults = CohortConfiguration.Limits(
        instructions: 10_000_000, memoryMB: 32, wallMilliseconds: 1000, maxBodyKB: 1024, maxScriptKB: 1024)

    /// Bytes a script's state may use.
    public var memoryBytes: Int { memoryMB * 1024 * 1024 }
    /// Largest request body in bytes.
    public var maxBodyBytes: Int { maxBodyKB * 1024 }
    /// Largest script source in bytes.
    public var maxScriptBytes: Int { maxScriptKB * 1024 }
}

extension CohortConfiguration.Gate {
    /// The gate a cohort gets when its file leaves `[gate]` out.
    public static let defaults = CohortConfiguration.Gate(
        bakeSeconds: 10, maxBakeSeconds: 120, minRequests: 50, maxErrorRate: 0.01,
        maxErrorRateIncrease: 0.005, maxP99Milliseconds: 250, maxNewSignatures: 0, maxCrashes: 0)
}

extension CohortConfiguration.Restart {
    /// The restart policy a cohort gets when its file leaves `[restart]` out.
    public static let defaults = CohortConfiguration.Restart(maxRestarts: 5, windowSeconds: 10)
}
