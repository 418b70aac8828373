import BulkheadCore
import Foundation
import Rollout
import Store
import Synchronization

/// The health reports of a fleet's host agents, held by the control process that
/// leads the driver (health never goes through etcd): the last report of each host,
/// in memory only. A control process that takes the lead starts empty and is filled
/// within a report interval, since every host sends to whoever leads.
///
/// A report is taken for host NAME only with the token whose hash NAME's own key in
/// the store holds (`host/NAME`, which only the host's etcd identity may write): the
/// hash is read once per token and remembered while the host keeps sending it.
public final class FleetReports: Sendable {
    /// Who is alive, and the hosts' report tokens.
    let directory: any FleetDirectory
    /// How long a host that is no longer alive stays listed with its last report.
    let keepGone: TimeInterval
    private let state = Mutex(State())

    private struct State {
        /// The last report of each host, and when it arrived.
        var reports: [String: (report: HostReport, at: Date)] = [:]
        /// The token hash each host's reports were last taken with.
        var tokens: [String: String] = [:]
    }

    /// Reports checked against `directory`; a host gone from it stays listed for
    /// `keepGone` seconds after its last report.
    public init(directory: any FleetDirectory, keepGone: TimeInterval = 600) {
        self.directory = directory
        self.keepGone = keepGone
    }

    /// Takes `report` from host `name`, sent with bearer `token`.
    public func accept(_ report: HostReport, from name: String, token: String) async throws(ControlError) {
        guard report.host == name else {
            throw ControlError(.invalid, "the report names host '\(report.host)' but was sent for '\(name)'")
        }
        let hash = TokenHash.of(token: token)
        let known = state.withLock { $0.tokens[name] }
        if known.map({ !constantTimeEquals($0, hash) }) ?? true {
            let stored: String?
            do {
                stored = try await directory.reportTokenHash(host: name)
            } catch {
                throw ControlError(.controlPlaneUnavailable, "cannot check host \(name)'s report token: \(error)")
            }
            guard let stored else {
                throw ControlError(.unauthorized, "host \(name) is not alive in the fleet's store (no key host/\(name) with a report token)")
            }
            guard constantTimeEquals(stored, hash) else {
                throw ControlError(.unauthorized, "the token is not host \(name)'s report token")
            }
        }
        state.withLock { state in
            state.tokens[name] = hash
            state.reports[name] = (report, Date())
        }
    }

    /// The hosts that reported within `freshWithin` seconds, as a plan sees them:
    /// name, group and each pool's worker count.
    public func planHosts(freshWithin: TimeInterval) -> [FleetPlanHost] {
        let now = Date()
        return state.withLock { state in
            state.reports.values.filter { now.timeIntervalSince($0.at) <= freshWithin }.map { received in
                FleetPlanHost(
                    name: received.report.host, group: received.report.group,
                    workers: Dictionary(received.report.status.pools.map { ($0.name, $0.desiredWorkers) }, uniquingKeysWith: max))
            }.sorted { $0.name < $1.name }
        }
    }

    /// Every host's last report on rollout `id` (nil when its last report had none),
    /// and whether it reported within `freshWithin` seconds.
    public func stageReports(rollout id: Int, freshWithin: TimeInterval) -> [FleetStageReports.HostReport] {
        let now = Date()
        return state.withLock { state in
            state.reports.values.map { received in
                FleetStageReports.HostReport(
                    host: received.report.host, report: received.report.stages.first { $0.rollout == id },
                    fresh: now.timeIntervalSince(received.at) <= freshWithin)
            }.sorted { $0.host < $1.host }
        }
    }

    /// Each host's last deployment reports, and when they arrived.
    func hostDeploymentReports() -> [(reports: [DeploymentReport], at: Date)] {
        state.withLock { state in state.reports.values.map { ($0.report.deployments, $0.at) } }
    }

    /// The fleet: every host alive in the store, with its last report, and hosts
    /// that reported within `keepGone` but are gone from the store (not alive).
    public func status(answeredBy: String?, leading: Bool) async throws(ControlError) -> FleetStatus {
        let live: (newestChange: Int, hosts: [HostListing])
        do {
            live = try await directory.liveHosts()
        } catch {
            throw ControlError(.controlPlaneUnavailable, "cannot list the fleet's hosts: \(error)")
        }
        let now = Date()
        let reports = state.withLock { state in
            state.reports = state.reports.filter { now.timeIntervalSince($0.value.at) <= keepGone }
            return state.reports
        }
        var hosts = live.hosts.map { key in
            // How far the host has come, from its last report (its key says only that it lives).
            var listing = key
            if let applied = reports[key.name]?.report.status.feed?.appliedRevision {
                listing.appliedRevision = applied
                listing.lag = max(0, live.newestChange - applied)
            }
            return FleetHostStatus(
                name: listing.name, group: listing.group, alive: true, listing: listing,
                reportedAt: reports[listing.name]?.at, status: reports[listing.name]?.report.status,
                stages: reports[listing.name]?.report.stages ?? [])
        }
        let alive = Set(live.hosts.map(\.name))
        for (name, received) in reports where !alive.contains(name) {
            hosts.append(FleetHostStatus(
                name: name, group: received.report.group, alive: false, listing: nil, reportedAt: received.at,
                status: received.report.status, stages: received.report.stages))
        }
        return FleetStatus(
            newestChange: live.newestChange, answeredBy: answeredBy, leading: leading,
            hosts: hosts.sorted { $0.name < $1.name })
    }
}

extension FleetReports {
    /// The fleet's reports on each deployment, summed over the hosts that reported
    /// within `freshWithin` seconds; a deployment whose hosts report different
    /// shares (a step not yet taken everywhere) has none until they agree.
    public func deploymentReports(freshWithin: TimeInterval) -> [Int: DeploymentReport] {
        let now = Date()
        let all = hostDeploymentReports().filter { now.timeIntervalSince($0.at) <= freshWithin }.flatMap(\.reports)
        var sums: [Int: DeploymentReport] = [:]
        var disagreeing = Set<Int>()
        for report in all {
            if var sum = sums[report.deployment] {
                if sum.percent != report.percent { disagreeing.insert(report.deployment) }
                sum.add(report)
                sums[report.deployment] = sum
            } else {
                sums[report.deployment] = report
            }
        }
        for id in disagreeing { sums[id] = nil }
        return sums
    }
}
