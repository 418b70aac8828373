import BulkheadCore

/// A host of a fleet as a rollout's plan sees it: its name, its group and the worker
/// count of each of its pools (a host's cohort files keep their own counts).
public struct FleetPlanHost: Codable, Sendable, Equatable {
    /// The host's name (`--host`).
    public var name: String
    /// Its group (`--group`): the plan widens group by group.
    public var group: String
    /// Workers per pool on this host.
    public var workers: [String: Int]

    /// A host of the plan.
    public init(name: String, group: String, workers: [String: Int]) {
        self.name = name
        self.group = group
        self.workers = workers
    }
}

extension RolloutPlan {
    /// The stages a platform change walks through a fleet, in order: for each cohort
    /// in `order`, its canary slots on one host (the first host, by name, of the
    /// first group that runs the pool), then the pool on every host of that group,
    /// then group by group (groups by name). A cohort without a canary starts with
    /// its first group. Hosts without the pool, or with no worker in it, get no
    /// stage of it. A host that joins after the plan was made keeps the pool's usual
    /// version until the next rollout.
    ///
    /// A stage's slots are the slot numbers it covers on its hosts (`0..<workers` of
    /// the largest pool among them); on a host, a slot belongs to the first stage
    /// that covers it (``RolloutMachine/version(forPool:slot:host:)``).
    public static func fleetStages(cohorts: [CohortConfiguration], hosts: [FleetPlanHost]) -> [Stage] {
        let ordered = cohorts.sorted { ($0.order, $0.name) < ($1.order, $1.name) }
        var stages: [Stage] = []
        for cohort in ordered {
            let running = hosts.filter { ($0.workers[cohort.name] ?? 0) > 0 }
            let groups = Dictionary(grouping: running, by: \.group).sorted { $0.key < $1.key }
            guard let first = groups.first else { continue }
            let firstGroup = first.value.sorted { $0.name < $1.name }
            if cohort.canaryWorkers > 0, let canaryHost = firstGroup.first {
                let workers = canaryHost.workers[cohort.name] ?? 0
                let slots = Array(0..<min(cohort.canaryWorkers, workers))
                stages.append(Stage(
                    pool: cohort.name, slots: slots, name: "\(cohort.name) canary on \(canaryHost.name)", isCanary: true,
                    gate: cohort.gate, hosts: [canaryHost.name]))
            }
            for (group, members) in groups {
                let names = members.map(\.name).sorted()
                let widest = members.map { $0.workers[cohort.name] ?? 0 }.max() ?? 0
                let stage = Stage(
                    pool: cohort.name, slots: Array(0..<widest), name: "\(cohort.name) on \(group)", gate: cohort.gate, hosts: names)
                // The canary host's group stage adds nothing when the canary took every slot
                // and the group is that one host.
                if let last = stages.last, last.pool == cohort.name, last.hosts == names, last.slots == stage.slots { continue }
                stages.append(stage)
            }
        }
        return stages
    }

    /// The slots of `pool` (with `workers` workers) on `host` that stage `index`
    /// puts its version on: those whose first covering stage it is.
    public static func slots(ofStage index: Int, in stages: [Stage], pool: String, workers: Int, host: String?) -> [Int] {
        (0..<workers).filter { slot in
            stages.firstIndex { $0.covers(pool: pool, slot: slot, host: host) } == index
        }
    }

    /// The slots of `pool` on `host` still on the old version while stage `index`
    /// bakes: those whose first covering stage comes later, or that no stage covers.
    public static func slotsAfter(stage index: Int, in stages: [Stage], pool: String, workers: Int, host: String?) -> [Int] {
        (0..<workers).filter { slot in
            (stages.firstIndex { $0.covers(pool: pool, slot: slot, host: host) } ?? Int.max) > index
        }
    }

    /// Whether stage `index` of a fleet plan is judged against the old version over
    /// the same window (a later stage of its pool exists: its slots, on whichever
    /// hosts, still run the old version) rather than against its own slots before it.
    public static func fleetBaselineIsConcurrent(forStage index: Int, in stages: [Stage]) -> Bool {
        guard stages.indices.contains(index) else { return false }
        return stages[(index + 1)...].contains { $0.pool == stages[index].pool }
    }
}

/// A fleet stage judged as one: each host's report on the current stage, combined
/// into the one report the machine judges. Pure; the driver gathers the hosts'
/// reports (sent to it over HTTP) and acts on the outcome.
public enum FleetStageReports {
    /// One host's latest report on a rollout, as the driver holds it.
    public struct HostReport: Sendable, Equatable {
        /// The host.
        public var host: String
        /// Its report on the rollout, nil when it sent none.
        public var report: StageReport?
        /// Whether it reported lately (within the driver's patience).
        public var fresh: Bool

        /// A host's report.
        public init(host: String, report: StageReport?, fresh: Bool) {
            self.host = host
            self.report = report
            self.fresh = fresh
        }
    }

    /// What the hosts' reports add up to.
    public enum Outcome: Sendable, Equatable {
        /// One report for the machine: the stage's hosts' samples added up, and the
        /// baseline of the old version (see ``combine(rollout:machine:hosts:)``).
        case report(StageReport)
        /// These hosts of the stage have not acknowledged it yet (the window starts
        /// when the last one does).
        case waiting([String])
        /// These hosts of the stage sent no report lately.
        case away([String])
        /// Every host the stage names is cordoned: there is nothing to judge.
        case everyHostCordoned
    }

    /// Combines the hosts' reports on `machine`'s current stage; `cordoned` hosts
    /// are left out.
    ///
    /// A guard trip on any host is passed on at once (a rollback never waits). A
    /// stage is judged only once every host it names acknowledged it (since its bake
    /// started) and all of them report: the sample is theirs added up; the baseline
    /// is the old version over the same window on every host that reported the stage
    /// (concurrent: slots later stages will get, wherever they are), or, for the last
    /// stage of a pool, the stage's hosts' own slots before it.
    public static func combine(rollout id: Int, machine: RolloutMachine, hosts: [HostReport], cordoned: Set<String> = []) -> Outcome {
        let target = machine.targetVersion
        // A cordoned host is out of the rollout: nothing waits for it or counts it.
        let hosts = hosts.filter { !cordoned.contains($0.host) }
        let mine = hosts.compactMap { host in host.report.map { (host.host, $0) } }
            .filter { $0.1.rollout == id && $0.1.version == target }
        if let trip = mine.first(where: { $0.1.guardTrip != nil }) { return .report(trip.1) }
        guard let index = machine.currentStage, machine.stages.indices.contains(index) else { return .waiting([]) }
        let stage = machine.stages[index]
        let named = (stage.hosts ?? hosts.map(\.host)).filter { !cordoned.contains($0) }
        if named.isEmpty, stage.hosts?.isEmpty == false { return .everyHostCordoned }
        let away = named.filter { name in !(hosts.first { $0.host == name }?.fresh ?? false) }
        if !away.isEmpty { return .away(away.sorted()) }
        let since = machine.bakeStartedAt ?? -Double.infinity
        let onStage = mine.filter { $0.1.stage == index && $0.1.acknowledgedAt >= since }
        let reports = Dictionary(onStage, uniquingKeysWith: { first, _ in first })
        let waiting = named.filter { reports[$0] == nil }
        if !waiting.isEmpty { return .waiting(waiting.sorted()) }
        let stageReports = named.compactMap { reports[$0] }
        var sample = StageSample()
        for report in stageReports { sample.add(report.sample) }
        let concurrent = RolloutPlan.fleetBaselineIsConcurrent(forStage: index, in: machine.stages)
        var baseline: StageSample?
        for report in concurrent ? Array(reports.values) : stageReports {
            guard let part = report.baseline else { continue }
            if baseline == nil { baseline = StageSample() }
            baseline?.add(part)
        }
        return .report(StageReport(
            rollout: id, stage: index, version: target,
            acknowledgedAt: stageReports.map(\.acknowledgedAt).max() ?? since,
            measuredAt: stageReports.map(\.measuredAt).min() ?? since,
            sample: sample, baseline: baseline))
    }
}
