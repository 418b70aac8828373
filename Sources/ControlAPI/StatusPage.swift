import BulkheadCore
import Rollout

/// The operators' status page served at `GET /` of the control API: the pools with
/// their health and a chart of the last minutes each, and the recent rollouts with
/// their stages and decisions.
///
/// One plain HTML document with its style inline and its charts drawn here as SVG:
/// no script, no external asset, nothing to build. It reloads itself every
/// `refreshSeconds`. Every number a chart draws is also in the chart's `data-`
/// attributes and `<title>`, so a test that reads the DOM sees what a person sees.
///
/// Rendering is a pure function of its arguments (the clock included), so the page
/// is tested without a host.
public enum StatusPage {
    /// A pool's cumulative totals at one instant, as the supervisor samples them once
    /// a second: requests answered and failed requests since it started.
    public typealias HistoryPoint = (at: Double, requests: Int, errors: Int)

    /// Seconds of history a pool's chart shows at most.
    public static let chartWindowSeconds: Double = 300
    /// Seconds a pool's chart shows at least: a host that started a moment ago gets a
    /// chart of its first minute, not a sliver at the edge of five.
    public static let shortestChartWindowSeconds: Double = 60
    /// Seconds the requests/s and error-rate figures of a pool's table average over:
    /// long enough not to flicker at one request a second, short enough to be "now".
    public static let rateWindowSeconds: Double = 10
    /// Seconds between the page's reloads.
    public static let refreshSeconds = 2
    /// Decisions shown per rollout, newest first.
    public static let decisionsShown = 5
    /// Rollouts shown, in the order given.
    public static let rolloutsShown = 10

    /// Renders the page.
    ///
    /// - Parameters:
    ///   - status: the host, pools in rollout order.
    ///   - history: per pool name, cumulative totals oldest first (the charts draw
    ///     the rate of each interval between two points).
    ///   - rollouts: the rollouts to show, in display order (newest first).
    ///   - now: seconds since the epoch; the charts' right edge and "… ago" times.
    public static func render(
        status: HostStatus, history: [String: [HistoryPoint]], rollouts: [(id: Int, status: RolloutStatus)], now: Double
    ) -> String {
        let pools = status.pools.map { pool in
            PoolView(pool: pool, points: history[pool.name] ?? [], now: now)
        }
        var html = HTML()
        html.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        html.raw("<meta http-equiv=\"refresh\" content=\"\(refreshSeconds)\">\n")
        html.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
        html.raw("<title>bulkhead status</title>\n<style>\(style)</style>\n</head>\n")
        let worst = pools.map(\.health).max() ?? .ok
        html.raw("<body data-health=\"\(worst.rawValue)\">\n")
        header(status: status, pools: pools, rollouts: rollouts, now: now, into: &html)
        html.raw("<section id=\"pools\">\n<h2>Pools</h2>\n<div class=\"grid\">\n")
        if pools.isEmpty { html.raw("<p class=\"muted\">No pools.</p>\n") }
        for view in pools { poolCard(view, now: now, into: &html) }
        html.raw("</div>\n</section>\n")
        rolloutSection(rollouts, now: now, into: &html)
        html.raw("</body>\n</html>\n")
        return html.output
    }

    // MARK: - Health

    /// A pool's health, worst last (so `max()` is the page's).
    enum Health: String, Comparable, CaseIterable {
        /// Every worker ready, config from its file, nothing quarantined.
        case ok
        /// Serving, with something to look at: workers missing, fallback config,
        /// quarantined scripts.
        case warning
        /// Restarted too often; the supervisor backs off.
        case degraded
        /// No worker ready: the pool serves nothing.
        case down

        private var rank: Int {
            switch self {
            case .ok: 0
            case .warning: 1
            case .degraded: 2
            case .down: 3
            }
        }

        static func < (lhs: Health, rhs: Health) -> Bool { lhs.rank < rhs.rank }
    }

    /// Everything one pool's card shows, computed once.
    struct PoolView {
        let pool: PoolStatus
        let ready: Int
        let health: Health
        let reasons: [String]
        let recent: RecentRate?
        let chart: [RatePoint]
        /// Seconds the chart spans, ending at `now`.
        let chartSeconds: Double
        let requestsTotal: Int
        let errorsTotal: Int
        let p99: Double?

        init(pool: PoolStatus, points: [HistoryPoint], now: Double) {
            self.pool = pool
            ready = pool.workers.filter(\.ready).count
            (health, reasons) = StatusPage.health(of: pool, ready: ready)
            recent = StatusPage.recentRate(points, seconds: StatusPage.rateWindowSeconds)
            chart = StatusPage.rates(points, since: now - StatusPage.chartWindowSeconds)
            let oldest = points.lazy.map(\.at).filter(\.isFinite).min() ?? now
            chartSeconds = min(StatusPage.chartWindowSeconds, max(StatusPage.shortestChartWindowSeconds, now - oldest))
            var latency = LatencyHistogram()
            var requests = 0
            var errors = 0
            for worker in pool.workers {
                latency.add(worker.stats.latency)
                requests += worker.stats.requests
                errors += worker.stats.errors.values.reduce(0, +)
            }
            requestsTotal = requests
            errorsTotal = errors
            p99 = latency.quantileMilliseconds(0.99)
        }
    }

    /// The health of a pool and why, for people.
    static func health(of pool: PoolStatus, ready: Int) -> (Health, [String]) {
        var health = Health.ok
        var reasons: [String] = []
        if pool.desiredWorkers > 0 && ready == 0 {
            health = .down
            reasons.append("no worker is ready")
        }
        if pool.degraded {
            health = max(health, .degraded)
            reasons.append("restarted too often; the supervisor backs off")
        }
        if ready > 0 && ready < pool.desiredWorkers {
            health = max(health, .warning)
            reasons.append("\(ready) of \(pool.desiredWorkers) workers ready")
        }
        if pool.configSource != "file" || pool.configError != nil {
            health = max(health, .warning)
            reasons.append("running its last known good config" + (pool.configError.map { ": \($0)" } ?? ""))
        }
        if !pool.quarantined.isEmpty {
            health = max(health, .warning)
            reasons.append("\(pool.quarantined.count) script\(pool.quarantined.count == 1 ? "" : "s") quarantined")
        }
        return (health, reasons)
    }

    // MARK: - Rates

    /// One interval between two history points, as rates.
    struct RatePoint: Equatable {
        /// The end of the interval.
        var at: Double
        var requestsPerSecond: Double
        var errorsPerSecond: Double
        /// The counts of the interval.
        var requests: Int
        var errors: Int
    }

    /// The rate of each interval between consecutive points that ends after
    /// `since`. Totals only grow, but a counter that went down (a supervisor
    /// that started counting again) reads as an empty interval, never a negative one.
    static func rates(_ points: [HistoryPoint], since: Double) -> [RatePoint] {
        let sorted = points.filter { $0.at.isFinite }.sorted { $0.at < $1.at }
        var result: [RatePoint] = []
        for (earlier, later) in zip(sorted, sorted.dropFirst()) {
            let seconds = later.at - earlier.at
            guard seconds > 0, later.at > since else { continue }
            let requests = max(0, later.requests - earlier.requests)
            let errors = max(0, later.errors - earlier.errors)
            result.append(RatePoint(
                at: later.at, requestsPerSecond: Double(requests) / seconds, errorsPerSecond: Double(errors) / seconds,
                requests: requests, errors: errors))
        }
        return result
    }

    /// A pool's traffic over its last few seconds.
    struct RecentRate: Equatable {
        var requestsPerSecond: Double
        /// Failed requests over answered ones; nil without requests.
        var errorRate: Double?
        var seconds: Double
    }

    /// The rate from the latest point back to the last point at least `seconds`
    /// before it (or the oldest one); nil with fewer than two points.
    static func recentRate(_ points: [HistoryPoint], seconds: Double) -> RecentRate? {
        let sorted = points.filter { $0.at.isFinite }.sorted { $0.at < $1.at }
        guard let last = sorted.last,
              let first = sorted.last(where: { $0.at <= last.at - seconds }) ?? sorted.first,
              last.at > first.at
        else { return nil }
        let span = last.at - first.at
        let requests = max(0, last.requests - first.requests)
        let errors = max(0, last.errors - first.errors)
        return RecentRate(
            requestsPerSecond: Double(requests) / span,
            errorRate: requests > 0 ? min(1, Double(errors) / Double(requests)) : nil,
            seconds: span)
    }

    // MARK: - Header

    static func header(
        status: HostStatus, pools: [PoolView], rollouts: [(id: Int, status: RolloutStatus)], now: Double,
        into html: inout HTML
    ) {
        html.raw("<header>\n<h1>bulkhead</h1>\n<p class=\"summary\">")
        var counts: [String] = []
        for health in Health.allCases {
            let count = pools.filter { $0.health == health }.count
            if count > 0 { counts.append("\(count) \(health.rawValue)") }
        }
        html.text("\(pools.count) pool\(pools.count == 1 ? "" : "s")")
        if !counts.isEmpty { html.text(" (" + counts.joined(separator: ", ") + ")") }
        let active = rollouts.filter { !$0.status.state.isFinished }.count
        html.text(" · \(active) rollout\(active == 1 ? "" : "s") in progress")
        html.raw("</p>\n<p class=\"muted\">")
        html.text("supervisor pid \(status.supervisorPID)")
        if let api = status.api { html.text(" · API \(api)") }
        html.text(" · updated \(clock(now)) UTC · reloads every \(refreshSeconds) s")
        html.raw("</p>\n")
        breakGlass(status, into: &html)
        html.raw("</header>\n")
    }

    /// The freeze and the pins, always stated (an operator must never have to guess
    /// whether break glass holds something), in `data-` attributes too.
    static func breakGlass(_ status: HostStatus, into html: inout HTML) {
        let pins = status.pins.sorted { $0.key < $1.key }
        let held = status.frozen || !pins.isEmpty || status.breakGlassError != nil
        html.raw("<p id=\"break-glass\" class=\"\(held ? "break-glass held" : "muted")\" data-frozen=\"\(status.frozen)\"")
        for (kind, version) in pins { html.raw(" data-pinned-\(escape(kind))=\"\(version)\"") }
        html.raw(">")
        if let error = status.breakGlassError {
            html.text("break glass: unknown (\(error))")
        } else {
            var parts = [status.frozen ? "rollouts frozen" : "not frozen"]
            parts += pins.isEmpty ? ["nothing pinned"] : pins.map { "\($0.key) pinned to v\($0.value)" }
            html.text("break glass: " + parts.joined(separator: " · "))
        }
        html.raw("</p>\n")
    }

    // MARK: - Pools

    static func poolCard(_ view: PoolView, now: Double, into html: inout HTML) {
        let pool = view.pool
        html.raw("<article class=\"card pool \(view.health.rawValue)\" id=\"pool-\(escape(pool.name))\"")
        html.raw(" data-pool=\"\(escape(pool.name))\" data-health=\"\(view.health.rawValue)\">\n")
        html.raw("<h3>")
        html.text(pool.name)
        html.raw(" <span class=\"badge \(view.health.rawValue)\">\(view.health.rawValue)</span></h3>\n")
        if !view.reasons.isEmpty {
            html.raw("<ul class=\"reasons\">")
            for reason in view.reasons {
                html.raw("<li>")
                html.text(reason)
                html.raw("</li>")
            }
            html.raw("</ul>\n")
        }
        html.raw("<table class=\"facts\">\n")
        func row(_ label: String, _ key: String, _ value: String, note: String? = nil) {
            html.raw("<tr data-key=\"\(key)\"><th>")
            html.text(label)
            html.raw("</th><td>")
            html.text(value)
            if let note {
                html.raw(" <span class=\"muted\">")
                html.text(note)
                html.raw("</span>")
            }
            html.raw("</td></tr>\n")
        }
        row("workers", "workers", "\(view.ready)/\(pool.desiredWorkers) ready",
            note: pool.workers.count == pool.desiredWorkers ? nil : "\(pool.workers.count) running")
        let window = view.recent.map { "last \(fixed($0.seconds, 0)) s" }
        row("requests/s", "requests-per-second", view.recent.map { fixed($0.requestsPerSecond, 1) } ?? "–",
            note: window)
        row("error rate", "error-rate", view.recent?.errorRate.map(percent) ?? "–", note: window)
        row("p99", "p99", view.p99.map { fixed($0, 2) + " ms" } ?? "–", note: "since the workers started")
        row("versions", "versions", versions(of: pool.workers))
        row("restarts", "restarts", String(pool.restarts))
        row("degraded", "degraded", pool.degraded ? "yes" : "no")
        row("quarantined", "quarantined", pool.quarantined.isEmpty ? "none" : pool.quarantined.joined(separator: ", "))
        row("port", "port", String(pool.port), note: pool.configSource == "file" ? nil : "config: \(pool.configSource)")
        html.raw("</table>\n")
        chart(view, now: now, into: &html)
        html.raw("</article>\n")
    }

    /// `runtime v2 · rules v1 · binary v0 · policy v0`, or with a count per version while the
    /// workers differ (a rollout in progress): `runtime v2×1 v1×1`.
    static func versions(of workers: [WorkerStatus]) -> String {
        guard !workers.isEmpty else { return "–" }
        let kinds: [(String, KeyPath<ArtifactVersions, Int>)] = [
            ("runtime", \.runtime), ("rules", \.rules), ("binary", \.binary), ("policy", \.policy),
        ]
        return kinds.map { name, path in
            var counts: [Int: Int] = [:]
            for worker in workers { counts[worker.stats.versions[keyPath: path], default: 0] += 1 }
            if counts.count == 1, let only = counts.keys.first { return "\(name) v\(only)" }
            return name + counts.sorted { $0.key > $1.key }.map { " v\($0.key)×\($0.value)" }.joined()
        }.joined(separator: " · ")
    }

    // MARK: - Charts

    static let chartWidth = 320.0
    static let chartHeight = 64.0

    /// The pool's requests/s (blue, filled) and errors/s (red) over the chart window,
    /// on one scale from zero to a round maximum.
    static func chart(_ view: PoolView, now: Double, into html: inout HTML) {
        let points = view.chart
        let name = escape(view.pool.name)
        let peakRequests = points.map(\.requestsPerSecond).max() ?? 0
        let peakErrors = points.map(\.errorsPerSecond).max() ?? 0
        let top = roundUp(max(peakRequests, peakErrors, 1))
        let requests = points.reduce(0) { $0 + $1.requests }
        let errors = points.reduce(0) { $0 + $1.errors }
        let latest = points.last
        let span = duration(view.chartSeconds)
        let summary = points.isEmpty
            ? "\(view.pool.name): no traffic data yet"
            : "\(view.pool.name), last \(span): \(requests) requests, \(errors) errors; "
                + "now \(fixed(latest?.requestsPerSecond ?? 0, 1)) req/s, \(fixed(latest?.errorsPerSecond ?? 0, 1)) err/s; "
                + "peak \(fixed(peakRequests, 1)) req/s, \(fixed(peakErrors, 1)) err/s"

        html.raw("<figure class=\"chart\">\n")
        html.raw("<svg class=\"sparkline\" id=\"chart-\(name)\" data-pool=\"\(name)\" role=\"img\"")
        html.raw(" width=\"\(fixed(chartWidth, 0))\" height=\"\(fixed(chartHeight, 0))\"")
        html.raw(" viewBox=\"0 0 \(fixed(chartWidth, 0)) \(fixed(chartHeight, 0))\"")
        html.raw(" data-window-seconds=\"\(fixed(view.chartSeconds, 0))\" data-points=\"\(points.count)\"")
        html.raw(" data-requests=\"\(requests)\" data-errors=\"\(errors)\" data-max=\"\(number(top))\"")
        html.raw(" data-seconds-ago=\"\(points.map { number(max(0, now - $0.at)) }.joined(separator: " "))\"")
        html.raw(" data-requests-per-second=\"\(points.map { number($0.requestsPerSecond) }.joined(separator: " "))\"")
        html.raw(" data-errors-per-second=\"\(points.map { number($0.errorsPerSecond) }.joined(separator: " "))\">")
        html.raw("<title>")
        html.text(summary)
        html.raw("</title>\n")
        // The top of the scale, then the baseline.
        html.raw("<line class=\"grid\" x1=\"0\" y1=\"1\" x2=\"\(fixed(chartWidth, 0))\" y2=\"1\"/>")
        html.raw("<line class=\"axis\" x1=\"0\" y1=\"\(fixed(chartHeight - 0.5, 1))\" x2=\"\(fixed(chartWidth, 0))\" y2=\"\(fixed(chartHeight - 0.5, 1))\"/>\n")
        if let first = points.first, let last = points.last {
            // x: the window's start at the left edge, `now` at the right, so a pool
            // whose numbers stopped coming shows a gap rather than a stretched line.
            func x(_ at: Double) -> Double {
                min(chartWidth, max(0, chartWidth - (now - at) / view.chartSeconds * chartWidth))
            }
            func y(_ rate: Double) -> Double { (chartHeight - 1) - min(1, rate / top) * (chartHeight - 2) }
            let requestLine = points.map { "\(fixed(x($0.at), 1)),\(fixed(y($0.requestsPerSecond), 1))" }
            let errorLine = points.map { "\(fixed(x($0.at), 1)),\(fixed(y($0.errorsPerSecond), 1))" }
            let left = fixed(x(first.at), 1)
            let right = fixed(x(last.at), 1)
            let base = fixed(chartHeight - 1, 1)
            html.raw("<polygon class=\"requests-area\" points=\"\(left),\(base) \(requestLine.joined(separator: " ")) \(right),\(base)\"/>\n")
            html.raw("<polyline class=\"requests\" points=\"\(requestLine.joined(separator: " "))\"/>\n")
            html.raw("<polyline class=\"errors\" points=\"\(errorLine.joined(separator: " "))\"/>\n")
        }
        html.raw("</svg>\n<figcaption>")
        if points.isEmpty {
            html.raw("<span class=\"muted\">collecting data…</span>")
        } else {
            html.raw("<span class=\"key requests\">requests/s</span> <span class=\"key errors\">errors/s</span> ")
            html.text("· last \(span) · scale 0–\(number(top))/s · ")
            html.text("\(requests) requests, \(errors) errors")
        }
        html.raw("</figcaption>\n</figure>\n")
    }

    /// The smallest 1, 2 or 5 × 10ⁿ at or above `value`: a scale people can read.
    static func roundUp(_ value: Double) -> Double {
        guard value.isFinite, value > 0 else { return 1 }
        var magnitude = 1.0
        while magnitude * 10 <= value { magnitude *= 10 }
        while magnitude > value { magnitude /= 10 }
        for step in [1.0, 2, 5, 10] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    // MARK: - Rollouts

    static func rolloutSection(_ rollouts: [(id: Int, status: RolloutStatus)], now: Double, into html: inout HTML) {
        html.raw("<section id=\"rollouts\">\n<h2>Rollouts</h2>\n")
        if rollouts.isEmpty { html.raw("<p class=\"muted\">No rollouts yet.</p>\n") }
        for (id, status) in rollouts.prefix(rolloutsShown) { rolloutCard(id: id, status, now: now, into: &html) }
        html.raw("</section>\n")
    }

    /// `running`, `paused`, `completed`, `rolled-back`, `aborted`, `pending`.
    static func stateName(_ state: RolloutMachine.State) -> String {
        switch state {
        case .pending: "pending"
        case .running: "running"
        case .paused: "paused"
        case .completed: "completed"
        case .rolledBack: "rolled-back"
        case .aborted: "aborted"
        }
    }

    static func rolloutCard(id: Int, _ status: RolloutStatus, now: Double, into html: inout HTML) {
        let state = stateName(status.state)
        html.raw("<article class=\"card rollout \(state)\" id=\"rollout-\(id)\" data-rollout=\"\(id)\"")
        html.raw(" data-kind=\"\(escape(status.kind.rawValue))\" data-state=\"\(state)\">\n<h3>")
        html.text("rollout \(id) · \(status.kind.rawValue) v\(status.previousVersion) → v\(status.targetVersion)")
        html.raw(" <span class=\"badge \(state)\">")
        html.text(status.state.description)
        html.raw("</span>")
        if status.frozen { html.raw(" <span class=\"badge frozen\">frozen</span>") }
        html.raw("</h3>\n")
        if case .rolledBack(_, let reason) = status.state {
            html.raw("<p class=\"why\">")
            html.text(reason)
            html.raw("</p>\n")
        }

        // MARK: stages
        html.raw("<table class=\"stages\">\n")
        for stage in status.stages {
            let (fill, label) = stageBar(stage, status: status, now: now)
            html.raw("<tr class=\"stage\" data-stage=\"\(stage.index)\" data-progress=\"\(stage.progress.rawValue)\"><td class=\"stage-name\">")
            html.text(stage.name)
            html.raw("</td><td class=\"muted\">")
            html.text(stage.slots.isEmpty ? stage.pool : "\(stage.pool) slot\(stage.slots.count == 1 ? "" : "s") "
                + stage.slots.map(String.init).joined(separator: ","))
            html.raw("</td><td class=\"bar-cell\"><div class=\"bar\"><div class=\"fill \(stage.progress.rawValue)\" style=\"width:\(fixed(fill * 100, 0))%\"></div></div></td><td>")
            html.text(label)
            if stage.hasNewVersion { html.raw(" <span class=\"muted\">(v\(status.targetVersion))</span>") }
            html.raw("</td></tr>\n")
        }
        html.raw("</table>\n")

        // MARK: gate
        if let verdict = status.lastVerdict, !status.state.isFinished {
            html.raw("<div class=\"gate\" data-outcome=\"\(escape(verdict.outcome.rawValue))\"><p><b>gate:</b> ")
            html.text("\(verdict.outcome.rawValue) after \(fixed(verdict.elapsedSeconds, 1)) s — \(verdict.requests) requests")
            html.text(", baseline " + (verdict.baselineRequests.map { "\($0) requests" } ?? "none"))
            if let p99 = verdict.p99Milliseconds { html.text(", p99 \(fixed(p99, 2)) ms") }
            html.text(", crashes \(verdict.crashes)")
            html.raw("</p>\n<ul>")
            for line in [verdict.platformErrors.description, verdict.scriptErrors.description] + verdict.reasons.prefix(3) {
                html.raw("<li>")
                html.text(line)
                html.raw("</li>")
            }
            for (signature, count) in verdict.newSignatures.sorted(by: { $0.key < $1.key }).prefix(3) {
                html.raw("<li class=\"bad\">")
                html.text("new signature (\(count)×): \(signature)")
                html.raw("</li>")
            }
            html.raw("</ul></div>\n")
        }

        // MARK: decisions
        let shown = status.decisions.suffix(decisionsShown).reversed()
        if !shown.isEmpty {
            html.raw("<p class=\"label\">decisions")
            if status.decisions.count > shown.count { html.text(", latest \(shown.count) of \(status.decisions.count)") }
            html.raw("</p>\n<ul class=\"decisions\">\n")
            for decision in shown {
                html.raw("<li data-event=\"\(escape(decision.event.rawValue))\"><time title=\"\(clock(decision.time)) UTC\">")
                html.text(ago(now - decision.time))
                html.raw("</time> <b class=\"event \(escape(decision.event.rawValue))\">")
                html.text(decision.event.rawValue)
                html.raw("</b> ")
                if let name = decision.stageName { html.text("[\(name)] ") }
                html.text("by \(decision.by): \(decision.message)")
                html.raw("</li>\n")
            }
            html.raw("</ul>\n")
        }
        html.raw("</article>\n")
    }

    /// How full a stage's bar is (0...1) and what it says: a baking stage fills with
    /// its bake time, and never quite fills until its gate passes it.
    static func stageBar(_ stage: RolloutStatus.StageStatus, status: RolloutStatus, now: Double) -> (Double, String) {
        switch stage.progress {
        case .passed: return (1, "passed")
        case .failed: return (1, "failed")
        case .pending: return (0, "pending")
        case .skipped: return (0, "skipped")
        case .aborted: return (0.5, "aborted")
        case .baking:
            let isCurrent = status.currentStage == stage.index
            guard isCurrent, let started = status.bakeStartedAt else { return (0.5, "baking") }
            let elapsed = max(0, now - started)
            var label = "baking \(fixed(elapsed, 0))"
            var fill = 0.5
            if let bake = status.lastVerdict?.gate.bakeSeconds, bake > 0 {
                label += "/\(fixed(bake, 0)) s"
                fill = min(0.97, elapsed / bake)
            } else {
                label += " s"
            }
            if case .paused = status.state { label = "paused, " + label }
            return (fill, label)
        }
    }

    // MARK: - Text

    /// Text with the five characters HTML gives meaning escaped; safe in element
    /// content and in double-quoted attribute values alike.
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }

    /// `x` with exactly `decimals` digits after the point; "–" when not finite.
    /// (Written here rather than with `String(format:)`: no locale, no Foundation.)
    static func fixed(_ x: Double, _ decimals: Int) -> String {
        guard x.isFinite else { return "–" }
        let scale = (0..<max(0, decimals)).reduce(1) { value, _ in value * 10 }
        let scaled = (abs(x) * Double(scale)).rounded()
        guard scaled < 9.0e15 else { return "\(x)" }
        let units = Int(scaled)
        let sign = x < 0 && units != 0 ? "-" : ""
        guard decimals > 0 else { return sign + String(units) }
        let fraction = String(units % scale)
        return "\(sign)\(units / scale).\(String(repeating: "0", count: decimals - fraction.count))\(fraction)"
    }

    /// Up to two decimals without trailing zeros (`12.5`, `3`, `0.33`): for `data-`
    /// attributes, short and exact enough to compare.
    static func number(_ x: Double) -> String {
        var text = fixed(x, 2)
        guard text.contains(".") else { return text }
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text == "-0" ? "0" : text
    }

    /// `0.0312` → `3.12%`.
    static func percent(_ rate: Double) -> String { fixed(rate * 100, 2) + "%" }

    /// `HH:MM:SS` of an epoch time, UTC.
    static func clock(_ time: Double) -> String {
        guard time.isFinite else { return "–" }
        let seconds = ((Int(time.rounded(.down)) % 86_400) + 86_400) % 86_400
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : String(n) }
        return "\(two(seconds / 3600)):\(two(seconds / 60 % 60)):\(two(seconds % 60))"
    }

    /// A chart's span: `45 s`, `2 min`, `5 min`.
    static func duration(_ seconds: Double) -> String {
        seconds < 120 ? "\(fixed(seconds, 0)) s" : "\(fixed(seconds / 60, 0)) min"
    }

    /// `4 s ago`, `3 min ago`, `2 h ago`, `5 d ago`; `just now` under a second.
    static func ago(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "–" }
        if seconds < 1 { return "just now" }
        if seconds < 120 { return "\(Int(seconds)) s ago" }
        if seconds < 7200 { return "\(Int(seconds / 60)) min ago" }
        if seconds < 172_800 { return "\(Int(seconds / 3600)) h ago" }
        return "\(Int(seconds / 86_400)) d ago"
    }

    /// The document being written: `raw` for markup this file spells out, `text` for
    /// every value from outside (escaped).
    struct HTML {
        private(set) var output = ""
        mutating func raw(_ markup: String) { output += markup }
        mutating func text(_ value: String) { output += StatusPage.escape(value) }
    }

    // MARK: - Style

    static let style = """

    :root{color-scheme:light;--ok:#1a7f37;--warning:#9a6700;--degraded:#bc4c00;--down:#cf222e;--blue:#0969da;--muted:#57606a;--line:#d0d7de}
    body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px 24px;color:#1f2328;background:#f6f8fa}
    h1{font-size:20px;margin:0}h2{font-size:16px;margin:18px 0 8px}h3{font-size:15px;margin:0 0 6px}
    header p{margin:2px 0}.muted{color:var(--muted)}.summary{font-weight:600}
    .break-glass.held{color:var(--warning);font-weight:600}
    .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
    .card{background:#fff;border:1px solid var(--line);border-left:4px solid var(--line);border-radius:6px;padding:10px 12px;margin-bottom:12px}
    .grid .card{margin-bottom:0}
    .pool.ok{border-left-color:var(--ok)}.pool.warning{border-left-color:var(--warning)}
    .pool.degraded{border-left-color:var(--degraded)}.pool.down{border-left-color:var(--down)}
    .badge{display:inline-block;font-size:12px;font-weight:600;padding:0 7px;border-radius:10px;color:#fff;background:var(--muted);vertical-align:1px}
    .badge.ok,.badge.completed{background:var(--ok)}.badge.warning,.badge.paused,.badge.frozen{background:var(--warning)}
    .badge.degraded{background:var(--degraded)}.badge.down,.badge.rolled-back,.badge.aborted{background:var(--down)}
    .badge.running{background:var(--blue)}
    .reasons{margin:0 0 6px;padding-left:18px;color:var(--degraded)}
    table{border-collapse:collapse}.facts{width:100%;font-size:13px}
    .facts th{text-align:left;font-weight:normal;color:var(--muted);width:90px;padding:1px 8px 1px 0;vertical-align:top}
    .facts td{padding:1px 0;font-variant-numeric:tabular-nums}
    .chart{margin:8px 0 0}.chart figcaption{font-size:12px;color:var(--muted)}
    .sparkline{display:block;width:100%;max-width:320px;height:64px;background:#fbfcfd;border:1px solid #eaeef2}
    .sparkline .grid{stroke:#eaeef2;stroke-dasharray:3 3}.sparkline .axis{stroke:var(--line)}
    .sparkline .requests-area{fill:#0969da22;stroke:none}
    .sparkline polyline{fill:none;stroke-width:1.5;stroke-linejoin:round}
    .sparkline .requests{stroke:var(--blue)}.sparkline .errors{stroke:var(--down)}
    .key::before{content:"";display:inline-block;width:10px;height:3px;margin:0 4px 3px 0;vertical-align:middle}
    .key.requests::before{background:var(--blue)}.key.errors::before{background:var(--down)}
    .rollout.running{border-left-color:var(--blue)}.rollout.completed{border-left-color:var(--ok)}
    .rollout.paused{border-left-color:var(--warning)}.rollout.rolled-back,.rollout.aborted{border-left-color:var(--down)}
    .stages td{padding:2px 10px 2px 0;font-size:13px;white-space:nowrap}.stage-name{font-weight:600;min-width:140px}
    .stages td:nth-child(2){min-width:130px}
    .bar-cell{width:220px}.bar{width:200px;height:10px;background:#eaeef2;border-radius:5px;overflow:hidden}
    .fill{height:100%;background:var(--muted)}.fill.passed{background:var(--ok)}.fill.baking{background:var(--blue)}
    .fill.failed{background:var(--down)}.fill.aborted{background:var(--warning)}
    .gate{font-size:13px;margin:6px 0}.gate p{margin:0}.gate ul{margin:2px 0;padding-left:18px;color:var(--muted)}
    .bad{color:var(--down)}.why{color:var(--down);margin:0 0 6px}
    .label{color:var(--muted);margin:8px 0 2px;font-size:13px}
    .decisions{font-size:13px;margin:0;padding:0;list-style:none}.decisions time{color:var(--muted)}
    .event.failed,.event.aborted{color:var(--down)}.event.passed,.event.completed{color:var(--ok)}

    """
}
