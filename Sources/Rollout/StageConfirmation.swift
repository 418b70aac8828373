/// Whether a fleet host holds its rollouts' stages or runs the last completed
/// versions instead: a host that cannot confirm its stages (its feed cut off, or its
/// reports not reaching the leader) for `deadline` seconds falls back on its own.
/// Pure, so the host's tick and the tests share it.
public enum StageConfirmation {
    /// Whether the host runs the last completed versions from now on.
    ///
    /// - Parameters:
    ///   - suspended: whether it does now.
    ///   - cutOffSince: since when each way of confirming has failed (wall clock),
    ///     nil for one that works.
    ///   - now: wall-clock seconds.
    ///   - deadline: how long it may go without confirming.
    ///
    /// Falling back takes one way failing past the deadline; coming back takes
    /// both working again. Were coming back only a matter of no failure being past
    /// the deadline, a host whose reports returned a little before its feed would
    /// follow the fleet again, then fall back once the feed's older failure passed
    /// the deadline: its canary flapping between versions as it reconnects.
    public static func suspended(_ suspended: Bool, cutOffSince: [Double?], now: Double, deadline: Double) -> Bool {
        let failing = cutOffSince.compactMap { $0 }
        if suspended { return !failing.isEmpty }
        guard let earliest = failing.min() else { return false }
        return now - earliest >= deadline
    }
}
