import BulkheadCore
import Rollout
import Testing

@testable import ControlAPI

/// The status page renderer, from values: what an operator reads on `GET /`.
struct StatusPageTests {
    // MARK: - Fixtures

    static let now = 1_700_000_000.0

    static func worker(slot: Int, ready: Bool = true, requests: Int = 0, latencyMs: [Double] = [],
                       versions: ArtifactVersions = ArtifactVersions()) -> WorkerStatus {
        var stats = WorkerStats()
        stats.requests = requests
        for ms in latencyMs { stats.latency.record(nanoseconds: UInt64(ms * 1_000_000)) }
        stats.versions = versions
        return WorkerStatus(slot: slot, pid: Int32(1000 + slot), ready: ready, adopted: false, heartbeatAge: 0.2, stats: stats)
    }

    static func pool(_ name: String, order: Int = 1, workers: [WorkerStatus]? = nil, desired: Int = 2,
                     degraded: Bool = false, restarts: Int = 0, quarantined: [String] = [],
                     configSource: String = "file", configError: String? = nil) -> PoolStatus {
        PoolStatus(name: name, order: order, port: 8100 + order, desiredWorkers: desired, configSource: configSource,
                   configError: configError, degraded: degraded, restarts: restarts, quarantined: quarantined,
                   workers: workers ?? (0..<desired).map { worker(slot: $0) })
    }

    static func host(_ pools: [PoolStatus], api: String? = "127.0.0.1:8080") -> HostStatus {
        HostStatus(supervisorPID: 42, takenAt: now, pools: pools, api: api)
    }

    static func page(
        _ pools: [PoolStatus], history: [String: [StatusPage.HistoryPoint]] = [:],
        rollouts: [(id: Int, status: RolloutStatus)] = [], api: String? = "127.0.0.1:8080"
    ) -> String {
        StatusPage.render(status: host(pools, api: api), history: history, rollouts: rollouts, now: now)
    }

    /// `count` points a second apart ending at `now`, growing by `requests` and
    /// `errors` a second.
    static func steady(seconds count: Int, requests: Int, errors: Int) -> [StatusPage.HistoryPoint] {
        (0..<count).map { index in
            let elapsed = index
            return (at: now - Double(count - 1 - index), requests: elapsed * requests, errors: elapsed * errors)
        }
    }

    static func verdict(_ outcome: GateVerdict.Outcome, elapsed: Double, requests: Int, bake: Double = 10,
                        reasons: [String] = ["baking: 5.0 s of 10.0 s"]) -> GateVerdict {
        var gate = CohortConfiguration.Gate.defaults
        gate.bakeSeconds = bake
        return GateVerdict(
            outcome: outcome, failedChecks: outcome == .fail ? [.errorRate] : [], reasons: reasons, gate: gate,
            alpha: 0.01, elapsedSeconds: elapsed, requests: requests, baselineRequests: 80, baselineUsed: true,
            platformErrors: .compare(label: "platform errors", stageCount: 0, stageTotal: requests, baseline: (0, 80),
                                     maxRate: 0.01, maxIncrease: 0.005, alpha: 0.01),
            scriptErrors: .compare(label: "script errors", stageCount: 0, stageTotal: requests, baseline: (0, 80),
                                   maxRate: nil, maxIncrease: 0.005, alpha: 0.01),
            newSignatures: [:], p99Milliseconds: 1.5, baselineP99Milliseconds: 1.4, crashes: 0)
    }

    static func stage(_ index: Int, _ name: String, pool: String, slots: [Int] = [],
                      _ progress: RolloutMachine.StageProgress, new: Bool = false) -> RolloutStatus.StageStatus {
        RolloutStatus.StageStatus(index: index, name: name, pool: pool, slots: slots, progress: progress, hasNewVersion: new)
    }

    static func decision(_ secondsAgo: Double, _ event: RolloutDecision.Event, stage: String? = nil,
                         by: String = "gate", _ message: String) -> RolloutDecision {
        RolloutDecision(time: now - secondsAgo, event: event, stage: nil, stageName: stage, by: by, verdict: nil, message: message)
    }

    /// A runtime rollout baking its second stage, 5 s into a 10 s bake.
    static func runningRollout(decisions: [RolloutDecision]? = nil) -> RolloutStatus {
        RolloutStatus(
            kind: .runtime, targetVersion: 2, previousVersion: 1, state: .running(stage: 1), frozen: false,
            currentStage: 1, bakeStartedAt: now - 5,
            stages: [
                stage(0, "free canary", pool: "free", slots: [0], .passed, new: true),
                stage(1, "free", pool: "free", slots: [1], .baking, new: true),
                stage(2, "pro", pool: "pro", .pending),
            ],
            stagesWithNewVersion: [0, 1], lastVerdict: verdict(.keepBaking, elapsed: 5, requests: 37),
            decisions: decisions ?? [
                decision(20, .started, stage: "free canary", by: "admin", "started rollout of runtime v2"),
                decision(5, .passed, stage: "free canary", "passed after 10.0 s, 120 requests"),
            ])
    }

    /// The text of the cell `key` in pool `name`'s table.
    static func cell(_ html: String, pool name: String, _ key: String) -> String? {
        guard let card = html.firstRange(of: "id=\"pool-\(name)\""),
              let row = html[card.upperBound...].firstRange(of: "<tr data-key=\"\(key)\">"),
              let open = html[row.upperBound...].firstRange(of: "<td>"),
              let close = html[open.upperBound...].firstRange(of: "</td>")
        else { return nil }
        return String(html[open.upperBound..<close.lowerBound])
    }

    /// The value of attribute `name` on the element whose opening tag contains `marker`.
    static func attribute(_ html: String, _ marker: String, _ name: String) -> String? {
        guard let tag = html.firstRange(of: marker) else { return nil }
        let start = html[..<tag.lowerBound].lastIndex(of: "<") ?? tag.lowerBound
        guard let end = html[tag.upperBound...].firstIndex(of: ">") else { return nil }
        let element = html[start..<end]
        guard let found = element.firstRange(of: " \(name)=\""),
              let quote = element[found.upperBound...].firstIndex(of: "\"")
        else { return nil }
        return String(element[found.upperBound..<quote])
    }

    /// The elements left open (or closed without opening), by a scan of the tags:
    /// empty when every element the page opens is closed in order.
    static func unbalancedTags(_ html: String) -> [String] {
        let void: Set<String> = ["meta", "br", "hr", "img", "input", "link"]
        var stack: [String] = []
        var problems: [String] = []
        for match in html.matches(of: #/<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>/#) {
            let name = match.2.lowercased()
            if void.contains(name) || match.3.hasSuffix("/") { continue }
            if match.1.isEmpty {
                stack.append(name)
            } else if stack.last == name {
                stack.removeLast()
            } else {
                problems.append("</\(name)> closes <\(stack.last ?? "nothing")>")
            }
        }
        return problems + stack.map { "<\($0)> never closed" }
    }

    // MARK: - The document

    @Test func reloadsItselfAndLoadsNothingElse() {
        let html = Self.page([Self.pool("free")], history: ["free": Self.steady(seconds: 30, requests: 5, errors: 0)],
                             rollouts: [(id: 1, status: Self.runningRollout())])
        #expect(html.hasPrefix("<!doctype html>"))
        #expect(html.contains("<meta http-equiv=\"refresh\" content=\"2\">"))
        // No script, no external asset: the page works offline and without JS.
        #expect(!html.contains("<script"))
        #expect(!html.contains("src="))
        #expect(!html.contains("href="))
        #expect(!html.contains("http://"))
        #expect(!html.contains("https://"))
        #expect(!html.contains("url("))
        #expect(Self.unbalancedTags(html).isEmpty, "\(Self.unbalancedTags(html))")
    }

    @Test func headerSummarizesPoolsAndRollouts() {
        let html = Self.page([Self.pool("free"), Self.pool("pro", order: 2, degraded: true)],
                             rollouts: [(id: 3, status: Self.runningRollout())])
        #expect(html.contains("2 pools (1 ok, 1 degraded) · 1 rollout in progress"))
        #expect(html.contains("supervisor pid 42 · API 127.0.0.1:8080"))
        #expect(html.contains("updated 22:13:20 UTC"))
    }

    @Test func headerAlwaysStatesTheFreezeAndThePins() {
        let calm = Self.page([Self.pool("free")])
        #expect(calm.contains("data-frozen=\"false\""))
        #expect(calm.contains("break glass: not frozen · nothing pinned"))
        #expect(!calm.contains("data-pinned-"))

        var status = Self.host([Self.pool("free")])
        status.frozen = true
        status.pins = ["runtime": 2, "rules": 0]
        let held = StatusPage.render(status: status, history: [:], rollouts: [], now: Self.now)
        #expect(held.contains("data-frozen=\"true\" data-pinned-rules=\"0\" data-pinned-runtime=\"2\""))
        #expect(held.contains("break glass: rollouts frozen · rules pinned to v0 · runtime pinned to v2"))

        status.breakGlassError = "cannot read the freeze and pins from the store: disk I/O error"
        let unknown = StatusPage.render(status: status, history: [:], rollouts: [], now: Self.now)
        #expect(unknown.contains("break glass: unknown (cannot read the freeze and pins from the store: disk I/O error)"))
    }

    // MARK: - Pools

    @Test func poolTableShowsWorkersRatesP99VersionsAndRestarts() {
        let workers = [
            Self.worker(slot: 0, requests: 60, latencyMs: Array(repeating: 2, count: 99) + [40],
                        versions: ArtifactVersions(runtime: 2, rules: 1)),
            Self.worker(slot: 1, ready: false, versions: ArtifactVersions(runtime: 1, rules: 1)),
        ]
        let html = Self.page(
            [Self.pool("free", workers: workers, restarts: 3, quarantined: ["acme/loop"])],
            history: ["free": Self.steady(seconds: 30, requests: 10, errors: 1)])
        #expect(Self.cell(html, pool: "free", "workers") == "1/2 ready")
        #expect(Self.cell(html, pool: "free", "requests-per-second") == "10.0 <span class=\"muted\">last 10 s</span>")
        #expect(Self.cell(html, pool: "free", "error-rate") == "10.00% <span class=\"muted\">last 10 s</span>")
        // 99 of 100 at 2 ms: the p99 is the top of the 2 ms bucket (the histogram is exact to ~19%).
        let p99 = Self.cell(html, pool: "free", "p99") ?? ""
        #expect(p99.hasPrefix("2.05 ms"), "\(p99)")
        #expect(Self.cell(html, pool: "free", "versions") == "runtime v2×1 v1×1 · rules v1 · binary v0 · policy v0")
        #expect(Self.cell(html, pool: "free", "restarts") == "3")
        #expect(Self.cell(html, pool: "free", "degraded") == "no")
        #expect(Self.cell(html, pool: "free", "quarantined") == "acme/loop")
        #expect(Self.attribute(html, "id=\"pool-free\"", "data-health") == "warning")
        #expect(html.contains("<li>1 of 2 workers ready</li>"))
        #expect(html.contains("<li>1 script quarantined</li>"))
    }

    @Test func poolWithoutTrafficShowsDashesNotZeros() {
        let html = Self.page([Self.pool("pro")], history: ["pro": Self.steady(seconds: 30, requests: 0, errors: 0)])
        #expect(Self.cell(html, pool: "pro", "requests-per-second")?.hasPrefix("0.0 ") == true)
        // No requests: an error rate would be 0/0, not 0%.
        #expect(Self.cell(html, pool: "pro", "error-rate")?.hasPrefix("– ") == true)
        #expect(Self.cell(html, pool: "pro", "p99")?.hasPrefix("– ") == true)
        let unsampled = Self.page([Self.pool("pro")])
        #expect(Self.cell(unsampled, pool: "pro", "requests-per-second") == "–")
    }

    @Test func healthGoesToTheWorstReason() {
        let html = Self.page([
            Self.pool("free"),
            Self.pool("pro", order: 2, degraded: true),
            Self.pool("enterprise", order: 3, workers: [Self.worker(slot: 0, ready: false)], desired: 1),
            Self.pool("fallback", order: 4, configSource: "last-known-good", configError: "workers: must be at least 1"),
        ])
        #expect(Self.attribute(html, "id=\"pool-free\"", "data-health") == "ok")
        #expect(Self.attribute(html, "id=\"pool-pro\"", "data-health") == "degraded")
        #expect(Self.attribute(html, "id=\"pool-enterprise\"", "data-health") == "down")
        #expect(Self.attribute(html, "id=\"pool-fallback\"", "data-health") == "warning")
        #expect(html.contains("running its last known good config: workers: must be at least 1"))
        #expect(Self.cell(html, pool: "pro", "degraded") == "yes")
        #expect(Self.attribute(html, "<body", "data-health") == "down")
    }

    // MARK: - Charts

    @Test func chartDrawsTheRateOfEachInterval() {
        let history: [StatusPage.HistoryPoint] = [
            (at: Self.now - 4, requests: 0, errors: 0),
            (at: Self.now - 3, requests: 10, errors: 0),
            (at: Self.now - 2, requests: 30, errors: 2),
            (at: Self.now, requests: 40, errors: 2),
        ]
        let html = Self.page([Self.pool("free")], history: ["free": history])
        let svg = "id=\"chart-free\""
        #expect(Self.attribute(html, svg, "data-requests-per-second") == "10 20 5")
        #expect(Self.attribute(html, svg, "data-errors-per-second") == "0 2 0")
        #expect(Self.attribute(html, svg, "data-seconds-ago") == "3 2 0")
        #expect(Self.attribute(html, svg, "data-requests") == "40")
        #expect(Self.attribute(html, svg, "data-errors") == "2")
        #expect(Self.attribute(html, svg, "data-max") == "20")
        #expect(html.contains("<title>free, last 60 s: 40 requests, 2 errors; now 5.0 req/s, 0.0 err/s; peak 20.0 req/s, 2.0 err/s</title>"))
        #expect(html.contains("<polyline class=\"requests\""))
        #expect(html.contains("<polyline class=\"errors\""))
    }

    @Test func counterThatWentDownIsAnEmptyIntervalNotANegativeRate() {
        let history: [StatusPage.HistoryPoint] = [
            (at: Self.now - 2, requests: 100, errors: 5),
            (at: Self.now - 1, requests: 3, errors: 0),
            (at: Self.now, requests: 13, errors: 1),
        ]
        let html = Self.page([Self.pool("free")], history: ["free": history])
        #expect(Self.attribute(html, "id=\"chart-free\"", "data-requests-per-second") == "0 10")
        #expect(Self.attribute(html, "id=\"chart-free\"", "data-errors-per-second") == "0 1")
    }

    @Test func chartKeepsTheLastFiveMinutesOnly() {
        let html = Self.page([Self.pool("free")], history: ["free": Self.steady(seconds: 400, requests: 3, errors: 0)])
        #expect(Self.attribute(html, "id=\"chart-free\"", "data-points") == "300")
        #expect(Self.attribute(html, "id=\"chart-free\"", "data-requests") == "900")
        let ages = Self.attribute(html, "id=\"chart-free\"", "data-seconds-ago")?.split(separator: " ") ?? []
        #expect(ages.first == "299")
        #expect(ages.last == "0")
        // The oldest point sits at the left edge and the newest at the right.
        #expect(html.contains("<polyline class=\"requests\" points=\"1.1,"))
        #expect(html.contains(" 320.0,"))
        #expect(Self.attribute(html, "id=\"chart-free\"", "data-window-seconds") == "300")
        #expect(html.contains("· last 5 min · scale 0–5/s · 900 requests, 0 errors"))
    }

    @Test func youngHostsChartSpansItsHistoryFromAMinuteUp() {
        // 90 s of history: the chart spans 90 s, its oldest interval at the left edge.
        let young = Self.page([Self.pool("free")], history: ["free": Self.steady(seconds: 91, requests: 2, errors: 0)])
        #expect(Self.attribute(young, "id=\"chart-free\"", "data-window-seconds") == "90")
        #expect(young.contains("· last 90 s ·"))
        #expect(young.contains("<polyline class=\"requests\" points=\"3.6,"))
        // 5 s of history: a minute, so the first seconds are not stretched across the card.
        let newborn = Self.page([Self.pool("free")], history: ["free": Self.steady(seconds: 6, requests: 2, errors: 0)])
        #expect(Self.attribute(newborn, "id=\"chart-free\"", "data-window-seconds") == "60")
        #expect(newborn.contains("<polyline class=\"requests\" points=\"298.7,"))
    }

    @Test func poolWithoutHistorySaysItIsCollecting() {
        let html = Self.page([Self.pool("free")], history: ["free": [(at: Self.now, requests: 5, errors: 0)]])
        #expect(Self.attribute(html, "id=\"chart-free\"", "data-points") == "0")
        #expect(html.contains("collecting data…"))
        #expect(!html.contains("<polyline"))
    }

    @Test func scaleIsARoundNumber() {
        #expect(StatusPage.roundUp(0) == 1)
        #expect(StatusPage.roundUp(0.3) == 0.5)
        #expect(StatusPage.roundUp(1) == 1)
        #expect(StatusPage.roundUp(7) == 10)
        #expect(StatusPage.roundUp(15) == 20)
        #expect(StatusPage.roundUp(200) == 200)
        #expect(StatusPage.roundUp(201) == 500)
        #expect(StatusPage.roundUp(.infinity) == 1)
    }

    @Test func recentRateAveragesOverTheLastTenSeconds() {
        // 5 req/s for a long time, then 50 req/s for the last 10 s.
        var history = Self.steady(seconds: 60, requests: 5, errors: 0)
        let base = history[49]
        for index in 50..<60 {
            history[index] = (at: history[index].at, requests: base.requests + (index - 49) * 50, errors: 0)
        }
        let rate = StatusPage.recentRate(history, seconds: 10)
        #expect(rate?.requestsPerSecond == 50)
        #expect(rate?.seconds == 10)
        #expect(StatusPage.recentRate([(at: 1, requests: 1, errors: 0)], seconds: 10) == nil)
    }

    // MARK: - Rollouts

    @Test func rolloutShowsStageBarsGateNumbersAndDecisions() {
        let html = Self.page([Self.pool("free")], rollouts: [(id: 7, status: Self.runningRollout())])
        #expect(Self.attribute(html, "id=\"rollout-7\"", "data-state") == "running")
        #expect(Self.attribute(html, "id=\"rollout-7\"", "data-kind") == "runtime")
        #expect(html.contains("rollout 7 · runtime v1 → v2 <span class=\"badge running\">running (stage 1)</span>"))
        #expect(html.contains("<tr class=\"stage\" data-stage=\"0\" data-progress=\"passed\">"))
        #expect(html.contains("<div class=\"fill passed\" style=\"width:100%\"></div></div></td><td>passed"))
        // 5 s into a 10 s bake: half full.
        #expect(html.contains("<div class=\"fill baking\" style=\"width:50%\"></div></div></td><td>baking 5/10 s"))
        #expect(html.contains("<div class=\"fill pending\" style=\"width:0%\"></div></div></td><td>pending"))
        #expect(html.contains("free slot 0"))
        #expect(html.contains("gate:</b> keep-baking after 5.0 s — 37 requests, baseline 80 requests, p99 1.50 ms, crashes 0"))
        #expect(html.contains("platform errors 0/37 = 0.00% vs baseline 0/80 = 0.00%"))
        #expect(html.contains("<li>baking: 5.0 s of 10.0 s</li>"))
        #expect(html.contains("<time title=\"22:13:15 UTC\">5 s ago</time> <b class=\"event passed\">passed</b> [free canary] by gate:"))
        // Newest first.
        let passed = html.firstRange(of: "data-event=\"passed\"")
        let started = html.firstRange(of: "data-event=\"started\"")
        #expect(passed != nil && started != nil)
        if let passed, let started { #expect(passed.lowerBound < started.lowerBound) }
    }

    @Test func onlyTheLatestDecisionsAreShown() {
        let decisions = (0..<8).map { Self.decision(Double(80 - $0 * 10), .paused, by: "op\($0)", "paused") }
        let html = Self.page([], rollouts: [(id: 2, status: Self.runningRollout(decisions: decisions))])
        #expect(html.contains("decisions, latest 5 of 8"))
        #expect(html.contains("by op7: paused"))
        #expect(html.contains("by op3: paused"))
        #expect(!html.contains("by op2: paused"))
    }

    @Test func rolledBackRolloutSaysWhy() {
        let status = RolloutStatus(
            kind: .rules, targetVersion: 4, previousVersion: 3,
            state: .rolledBack(stage: 0, reason: "new error signature: runtime.lua: attempt to index a nil value (field 'execute')"),
            frozen: true, currentStage: nil, bakeStartedAt: nil,
            stages: [Self.stage(0, "free canary", pool: "free", slots: [0], .failed), Self.stage(1, "free", pool: "free", .skipped)],
            stagesWithNewVersion: [], lastVerdict: Self.verdict(.fail, elapsed: 1.2, requests: 9),
            decisions: [Self.decision(150, .failed, stage: "free canary", "rolled back")])
        let html = Self.page([], rollouts: [(id: 9, status: status)])
        #expect(Self.attribute(html, "id=\"rollout-9\"", "data-state") == "rolled-back")
        #expect(html.contains("rolled back (stage 0 failed)"))
        #expect(html.contains("<span class=\"badge frozen\">frozen</span>"))
        #expect(html.contains("attempt to index a nil value (field &#39;execute&#39;)"))
        #expect(html.contains("<div class=\"fill failed\" style=\"width:100%\"></div></div></td><td>failed"))
        #expect(html.contains("<td>skipped"))
        #expect(html.contains("2 min ago"))
        // A finished rollout's last verdict is history; the decision log says what happened.
        #expect(!html.contains("class=\"gate\""))
        #expect(html.contains("0 rollouts in progress"))
    }

    @Test func noRolloutsSaysSo() {
        #expect(Self.page([Self.pool("free")]).contains("No rollouts yet."))
    }

    // MARK: - Escaping

    @Test func everyStringFromOutsideIsEscaped() {
        let hostile = "<script>alert(1)</script>"
        var status = Self.runningRollout(decisions: [
            Self.decision(1, .paused, stage: "<b>stage</b>", by: "\"><img src=x onerror=alert(1)>", hostile)
        ])
        status.stages[0].name = hostile
        let html = Self.page(
            [Self.pool("fr<ee>\"'&", quarantined: ["evil/\(hostile)"], configSource: "last-known-good", configError: hostile)],
            history: ["fr<ee>\"'&": Self.steady(seconds: 5, requests: 1, errors: 0)],
            rollouts: [(id: 1, status: status)], api: "\"><script>x</script>")
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img"))
        #expect(!html.contains("<b>stage"))
        #expect(!html.contains("fr<ee>"))
        #expect(html.contains("fr&lt;ee&gt;&quot;&#39;&amp;"))
        #expect(html.contains("evil/&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(html.contains("id=\"pool-fr&lt;ee&gt;&quot;&#39;&amp;\""))
        #expect(Self.unbalancedTags(html).isEmpty, "\(Self.unbalancedTags(html))")
    }

    // MARK: - Formatting

    @Test func numbersAndTimesReadWell() {
        #expect(StatusPage.number(12.5) == "12.5")
        #expect(StatusPage.number(3) == "3")
        #expect(StatusPage.number(1.0 / 3) == "0.33")
        #expect(StatusPage.number(-0.001) == "0")
        #expect(StatusPage.fixed(2.345, 1) == "2.3")
        #expect(StatusPage.fixed(.nan, 1) == "–")
        #expect(StatusPage.percent(0.0312) == "3.12%")
        #expect(StatusPage.clock(3661) == "01:01:01")
        #expect(StatusPage.ago(0.4) == "just now")
        #expect(StatusPage.ago(42) == "42 s ago")
        #expect(StatusPage.ago(600) == "10 min ago")
        #expect(StatusPage.ago(3 * 3600) == "3 h ago")
        #expect(StatusPage.escape("a<b>&\"'") == "a&lt;b&gt;&amp;&quot;&#39;")
    }
}
