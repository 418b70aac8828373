#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BulkheadCore
import Rollout
import Foundation
import Supervisor

/// `bulkhead status`: the pools at a glance, from the host (`admin.sock`).
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each pool: workers, requests, errors, p99, versions, restarts, state; quarantines, rollouts.",
        discussion: """
            From the host of --data (admin.sock). With --etcd, the fleet as its leading control process \
            sees it: each host's group, liveness, applied revision and lag, last report, freeze, pins and \
            feed, then each host's pools.
            """
    )

    @OptionGroup var dataOptions: ClientOptions
    @Flag(help: "Print JSON (the admin API's shape).")
    var json = false
    @Flag(help: "Redraw every second until interrupted (requests/s between frames).")
    var watch = false

    func run() throws {
        if dataOptions.etcd.endpoints != nil { return try fleet() }
        var previous: HostStatus?
        var lastLines = 0
        let terminal = isatty(STDOUT_FILENO) == 1
        repeat {
            let (status, answer) = try APIClient(dataOptions).call(.GET, "/v1/host/status", to: .host, as: HostStatus.self)
            if json {
                print(answer.text)
            } else {
                var text = StatusTable.render(status, previous: previous)
                if watch && terminal {
                    text = Terminal.fit(text)
                    if lastLines > 0 { print("\u{1B}[\(lastLines)A\u{1B}[J", terminator: "") }
                }
                print(text)
                lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
                previous = status
            }
            fflush(nil)
            if watch { usleep(1_000_000) }
        } while watch
    }
}

extension StatusCommand {
    /// With --etcd: the fleet's hosts and each one's pools, as the leader holds them.
    func fleet() throws {
        let client = APIClient(dataOptions)
        repeat {
            let (status, answer) = try client.call(.GET, "/v1/admin/fleet", to: .control, as: FleetStatus.self)
            if json {
                print(answer.text)
            } else {
                // The rollouts the hosts report on, for their stages' names.
                var rollouts: [Int: RolloutStatus] = [:]
                for id in Set(status.hosts.flatMap { $0.stages.map(\.rollout) }) {
                    rollouts[id] = try? client.call(.GET, "/v1/admin/rollouts/\(id)", to: .control, as: RolloutStatus.self).0
                }
                print(FleetTable.render(status, rollouts: rollouts, now: Date()))
            }
            fflush(nil)
            if watch { usleep(1_000_000) }
        } while watch
    }
}

/// Renders `FleetStatus`: a line per host, then each reporting host's pools.
enum FleetTable {
    static func render(_ fleet: FleetStatus, rollouts: [Int: RolloutStatus] = [:], now: Date) -> String {
        var rows: [[String]] = [["HOST", "GROUP", "ALIVE", "APPLIED", "LAG", "REPORTED", "FROZEN", "PINS", "FEED"]]
        for host in fleet.hosts {
            let status = host.status
            var feed = "-"
            if let state = status?.feed {
                feed = state.cutOffSince.map { "cut off \(Int(now.timeIntervalSince1970 - $0)) s" } ?? (state.problem == nil ? "following" : "trouble")
            }
            rows.append([
                host.name, host.group, host.alive ? "yes" : "no",
                host.listing?.appliedRevision.map(String.init) ?? "-", host.listing?.lag.map(String.init) ?? "-",
                host.reportedAt.map { "\(String(format: "%.1f", now.timeIntervalSince($0))) s ago" } ?? "never",
                status.map { $0.frozen ? "yes" : "no" } ?? "-",
                status.map { $0.pins.isEmpty ? "-" : $0.pins.sorted { $0.key < $1.key }.map { "\($0.key) v\($0.value)" }.joined(separator: ",") } ?? "-",
                feed,
            ])
        }
        var text = Table.render(rows)
        let leader = fleet.leading ? "the leader" : "a control process that does not lead (reports go to the leader)"
        text += "\n\(fleet.hosts.filter(\.alive).count) of \(fleet.hosts.count) host(s) alive; newest change \(fleet.newestChange); answered by \(leader) at \(fleet.answeredBy ?? "-")"
        for host in fleet.hosts {
            guard let status = host.status else { continue }
            text += "\n\n\(host.name) (\(host.group))\(host.alive ? "" : ", not alive: its last report")\n" + StatusTable.render(status)
            for report in host.stages.sorted(by: { $0.rollout < $1.rollout }) {
                text += "\n  " + stageLine(report, rollout: rollouts[report.rollout], status: status)
            }
        }
        return text
    }

    /// A host's part in a rollout: the stage, and how many of its workers run the new version.
    static func stageLine(_ report: StageReport, rollout: RolloutStatus?, status: HostStatus) -> String {
        let name = rollout.flatMap { $0.stages.indices.contains(report.stage) ? $0.stages[report.stage].name : nil } ?? "stage \(report.stage)"
        let workers = status.pools.flatMap(\.workers)
        let kind = rollout?.kind
        let onTarget = kind.map { kind in workers.filter { $0.stats.versions[kind] == report.version }.count }
        let serving = onTarget.map { "\($0) of \(workers.count) workers on \(kind.map(\.rawValue) ?? "") v\(report.version)" } ?? ""
        return "rollout \(report.rollout) at \(name): \(serving); \(report.sample.requests) requests on it since acknowledged"
    }
}

/// Renders `HostStatus` as an aligned table that fits 80 columns.
enum StatusTable {
    static func render(_ status: HostStatus, previous: HostStatus? = nil) -> String {
        var rows: [[String]] = [[
            "POOL", "PORT", "UP", previous == nil ? "REQUESTS" : "REQ/S", "ERR%", "P99MS", "RT/RU/BIN/POL", "RESTART", "STATE",
        ]]
        var notes: [String] = []
        for pool in status.pools {
            let ready = pool.workers.filter(\.ready).count
            var requests = 0
            var errors = 0
            var latency = LatencyHistogram()
            for worker in pool.workers {
                requests += worker.stats.requests
                errors += worker.stats.errors.values.reduce(0, +)
                latency.add(worker.stats.latency)
            }
            let p99 = latency.quantileMilliseconds(0.99).map { String(format: "%.2f", $0) } ?? "-"
            let state = pool.degraded ? "degraded" : (pool.configSource == "file" ? "ok" : "fallback")
            var requestsCell = String(requests)
            var errorRate = requests > 0 ? String(format: "%.2f", Double(errors) * 100 / Double(requests)) : "-"
            if let previous, let before = previous.pools.first(where: { $0.name == pool.name }) {
                let earlier = before.workers.reduce(0) { $0 + $1.stats.requests }
                let earlierErrors = before.workers.reduce(0) { $0 + $1.stats.errors.values.reduce(0, +) }
                let seconds = max(0.001, status.takenAt - previous.takenAt)
                let delta = max(0, requests - earlier)
                requestsCell = String(format: "%.0f", Double(delta) / seconds)
                errorRate = delta > 0 ? String(format: "%.2f", Double(max(0, errors - earlierErrors)) * 100 / Double(delta)) : "-"
            }
            // Versions: one set when every worker agrees, else the spread.
            let versions = Set(pool.workers.map { "\($0.stats.versions.runtime)/\($0.stats.versions.rules)/\($0.stats.versions.binary)/\($0.stats.versions.policy)" })
            let versionCell = versions.count == 1 ? versions.first ?? "-" : (versions.isEmpty ? "-" : "mixed")
            rows.append([pool.name, String(pool.port), "\(ready)/\(pool.desiredWorkers)", requestsCell, errorRate, p99,
                         versionCell, String(pool.restarts), state])
            if versions.count > 1 { notes.append("\(pool.name): versions (runtime/rules/binary/policy) \(versions.sorted().joined(separator: ", "))") }
            if let error = pool.configError { notes.append("\(pool.name): running last known good config: \(error)") }
            if !pool.quarantined.isEmpty { notes.append("\(pool.name): quarantined: \(pool.quarantined.joined(separator: ", "))") }
        }
        for rollout in status.rollouts ?? [] { notes.append(rollout) }
        notes.append(breakGlassLine(status))
        if let feed = status.feed { notes.append(feedLine(feed)) }
        if let ingress = status.ingress { notes.append("ingress \(ingress)" + (status.ingressPID == nil ? " (restarting)" : "")) }
        if let control = status.control { notes.append(controlLine(control)) }
        return Table.render(rows) + (notes.isEmpty ? "" : "\n" + notes.map { Terminal.wrap($0, width: 80) }.joined(separator: "\n"))
    }
}

extension StatusTable {
    /// The replica's revision against the feed's: what the data plane serves is that current.
    static func feedLine(_ feed: FeedStatus) -> String {
        let applied = feed.appliedRevision.map(String.init) ?? "none"
        var line = "replica at revision \(applied) of \(feed.latestRevision)"
        if let source = feed.source, !source.hasSuffix(".sqlite") { line += " from \(source)" }
        if let since = feed.cutOffSince {
            let date = Date(timeIntervalSince1970: since)
            line += ", cut off since \(date.formatted(Date.ISO8601FormatStyle())) (serving the replica)"
        }
        if let problem = feed.problem { line += " (\(problem))" }
        return line
    }

    /// The control process: where its API listens, whether it answers, its restarts.
    static func controlLine(_ control: ControlProcessStatus) -> String {
        let state = control.up ? "up" : (control.pid == nil ? "restarting" : "not answering (\(control.missedChecks) checks missed)")
        var line = "control \(control.api ?? "-")"
        if let pid = control.pid { line += " pid \(pid)" + (control.adopted ? " (adopted)" : "") }
        return line + ": \(state), \(control.restarts) restarts"
    }

    /// The freeze and the pins, always stated: "not frozen" is an answer, not a default.
    static func breakGlassLine(_ status: HostStatus) -> String {
        if let error = status.breakGlassError { return "break glass: unknown (\(error))" }
        let pins = status.pins.sorted { $0.key < $1.key }.map { "\($0.key) pinned to v\($0.value)" }
        return "break glass: " + ([status.frozen ? "rollouts frozen" : "not frozen"] + (pins.isEmpty ? ["nothing pinned"] : pins))
            .joined(separator: ", ")
    }
}

/// JSON for `--json`: sorted keys, ISO 8601 dates, the admin API's shapes.
enum JSONOutput {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    /// One value as one line of JSON.
    static func line<Value: Encodable>(_ value: Value) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// Aligned plain-text tables.
enum Table {
    static func render(_ rows: [[String]]) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = Array(repeating: 0, count: columns)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
