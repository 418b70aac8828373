// MARK: - Human summary

extension LoadReport {
    /// A few lines per target for a person: counts by outcome, latency, workers
    /// seen, and when failures happened.
    public var summary: String {
        let state = finished ? "finished" : "running"
        let header = "\(targets.count) target\(targets.count == 1 ? "" : "s"), "
            + "\(Self.decimal(elapsedSeconds, places: 1)) s, \(state): "
            + "\(attempts) requests, \(ok) ok, \(failed) not ok"
        return ([header] + targets.map { $0.summary(elapsedSeconds: elapsedSeconds) }).joined(separator: "\n")
    }

    /// `value` with `places` decimals, without Foundation's formatters.
    static func decimal(_ value: Double, places: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let scaled = Int((abs(value) * scale).rounded())
        let sign = value < 0 && scaled != 0 ? "-" : ""
        guard places > 0 else { return sign + "\(scaled)" }
        let divisor = Int(scale)
        let fraction = String(scaled % divisor)
        return sign + "\(scaled / divisor)." + String(repeating: "0", count: places - fraction.count) + fraction
    }
}

extension TargetReport {
    /// A compact description of this target's counts, such as
    ///
    /// ```
    /// free: GET 127.0.0.1:8101/ (Host hello.demo-free.localhost), 2 connections
    ///   1203 requests, 120.3/s: ok 1198 · 503 ×3 [limit-cpu 3] · eof 2
    ///   latency p50 1.21 ms · p90 3.02 ms · p99 8.40 ms · max 20.1 ms
    ///   workers 4123 ×600 · 4124 ×598; pools free ×1198
    ///   not ok from 2.3 s to 2.5 s, ok again from 2.6 s; 4 connections opened, 1 closed idle
    /// ```
    public func summary(elapsedSeconds: Double) -> String {
        var lines = ["\(label): \(method) \(address)\(path) (Host \(hostHeader)), \(connections) connection\(connections == 1 ? "" : "s")"]

        var outcomes = ["ok \(ok)"]
        for status in statuses {
            var text = "\(status.status) ×\(status.count)"
            if !status.errorKinds.isEmpty {
                text += " [" + Self.counts(status.errorKinds, separator: ", ", times: " ") + "]"
            }
            outcomes.append(text)
        }
        for kind in FailureKind.allCases where failures[kind] > 0 {
            outcomes.append("\(kind.rawValue) \(failures[kind])")
        }
        if inFlight > 0 { outcomes.append("in flight \(inFlight)") }
        let rate = elapsedSeconds > 0 ? Double(attempts) / elapsedSeconds : 0
        lines.append("  \(attempts) requests, \(LoadReport.decimal(rate, places: 1))/s: " + outcomes.joined(separator: " · "))

        if latency.count > 0 {
            let parts: [(String, Double?)] = [
                ("p50", latency.p50Milliseconds), ("p90", latency.p90Milliseconds),
                ("p99", latency.p99Milliseconds), ("max", latency.maxMilliseconds),
            ]
            lines.append("  latency " + parts.compactMap { name, value in
                value.map { "\(name) \(Self.milliseconds($0))" }
            }.joined(separator: " · "))
        }

        var seen: [String] = []
        if !workers.isEmpty { seen.append("workers " + Self.counts(workers, separator: " · ", times: " ×", limit: 8)) }
        if !pools.isEmpty { seen.append("pools " + Self.counts(pools, separator: " · ", times: " ×", limit: 8)) }
        if !seen.isEmpty { lines.append("  " + seen.joined(separator: "; ")) }

        var when: String
        if let first = firstFailureSeconds, let last = lastFailureSeconds {
            when = "not ok from \(LoadReport.decimal(first, places: 1)) s to \(LoadReport.decimal(last, places: 1)) s"
            if let recovered = recoveredSeconds {
                when += ", ok again from \(LoadReport.decimal(recovered, places: 1)) s"
            } else if ok == 0 {
                when += ", never ok"
            } else {
                when += ", no ok after that"
            }
        } else {
            when = "no failures"
        }
        lines.append("  \(when); \(connectionsOpened) connection\(connectionsOpened == 1 ? "" : "s") opened, \(idleClosed) closed idle")

        if !failureDetails.isEmpty {
            lines.append("  " + Self.counts(failureDetails, separator: "; ", times: " ×", limit: 3))
        }
        return lines.joined(separator: "\n")
    }

    /// `key ×count` pairs, most frequent first, at most `limit` of them.
    private static func counts(_ counts: [String: Int], separator: String, times: String, limit: Int = .max) -> String {
        let sorted = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        var parts = sorted.prefix(limit).map { "\($0.key)\(times)\($0.value)" }
        if sorted.count > limit { parts.append("+\(sorted.count - limit) more") }
        return parts.joined(separator: separator)
    }

    /// Milliseconds with two decimals below 10 ms, one above.
    private static func milliseconds(_ value: Double) -> String {
        LoadReport.decimal(value, places: value < 10 ? 2 : 1) + " ms"
    }
}
