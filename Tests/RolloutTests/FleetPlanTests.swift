import BulkheadCore
import Rollout
import Testing

@Suite("Fleet plan and combined stage reports")
struct FleetPlanTests {
    /// h1, h2 in dc1, h3 in dc2; free has 2 workers everywhere but h2 (3), pro 2.
    static let hosts = [
        FleetPlanHost(name: "h2", group: "dc1", workers: ["free": 3, "pro": 2]),
        FleetPlanHost(name: "h3", group: "dc2", workers: ["free": 2, "pro": 2]),
        FleetPlanHost(name: "h1", group: "dc1", workers: ["free": 2, "pro": 2]),
    ]

    static func cohorts() throws -> [CohortConfiguration] {
        [try Fixtures.cohort("pro", order: 2, workers: 2, canary: 1), try Fixtures.cohort("free", order: 1, workers: 2, canary: 1)]
    }

    @Test("per cohort in order: canary slots on the first host of the first group, then that group, then group by group")
    func widensHostByHost() throws {
        let stages = RolloutPlan.fleetStages(cohorts: try Self.cohorts(), hosts: Self.hosts)
        #expect(stages.map(\.name) == [
            "free canary on h1", "free on dc1", "free on dc2", "pro canary on h1", "pro on dc1", "pro on dc2",
        ])
        #expect(stages.map(\.hosts) == [["h1"], ["h1", "h2"], ["h3"], ["h1"], ["h1", "h2"], ["h3"]])
        #expect(stages[0].slots == [0] && stages[0].isCanary)
        #expect(stages[1].slots == [0, 1, 2], "the widest pool of the group")
    }

    @Test("a slot belongs to the first stage that covers it on its host")
    func slotsByHost() throws {
        let stages = RolloutPlan.fleetStages(cohorts: try Self.cohorts(), hosts: Self.hosts)
        #expect(RolloutPlan.slots(ofStage: 0, in: stages, pool: "free", workers: 2, host: "h1") == [0])
        #expect(RolloutPlan.slots(ofStage: 1, in: stages, pool: "free", workers: 2, host: "h1") == [1])
        #expect(RolloutPlan.slots(ofStage: 1, in: stages, pool: "free", workers: 3, host: "h2") == [0, 1, 2])
        #expect(RolloutPlan.slots(ofStage: 1, in: stages, pool: "free", workers: 2, host: "h3").isEmpty)
        #expect(RolloutPlan.slotsAfter(stage: 0, in: stages, pool: "free", workers: 2, host: "h1") == [1])
        #expect(RolloutPlan.slotsAfter(stage: 1, in: stages, pool: "free", workers: 2, host: "h3") == [0, 1])
        #expect(RolloutPlan.fleetBaselineIsConcurrent(forStage: 1, in: stages))
        #expect(!RolloutPlan.fleetBaselineIsConcurrent(forStage: 2, in: stages), "the last stage of free has no old slot left")

        var machine = try RolloutMachine(kind: .runtime, targetVersion: 2, previousVersion: 1, stages: stages, now: 0)
        _ = try machine.start(now: 0)
        #expect(machine.version(forPool: "free", slot: 0, host: "h1") == 2)
        #expect(machine.version(forPool: "free", slot: 1, host: "h1") == 1)
        #expect(machine.version(forPool: "free", slot: 0, host: "h3") == 1, "another host keeps the old version")
        #expect(machine.version(forPool: "free", slot: 5, host: "h3") == nil, "a slot no stage covers")
    }

    @Test("hosts without the pool get no stage of it; one host with every slot canary is one stage")
    func sparseHosts() throws {
        let stages = RolloutPlan.fleetStages(cohorts: [try Fixtures.cohort("free", order: 1, workers: 1, canary: 1)], hosts: [
            FleetPlanHost(name: "a", group: "g", workers: ["free": 1]),
            FleetPlanHost(name: "b", group: "g", workers: ["pro": 1]),
        ])
        #expect(stages.map(\.name) == ["free canary on a"])
    }

    static func report(stage: Int, ack: Double = 10, requests: Int, errors: Int = 0, baseline: Int?) -> StageReport {
        StageReport(
            rollout: 7, stage: stage, version: 2, acknowledgedAt: ack, measuredAt: ack + 5,
            sample: Fixtures.sample(requests: requests, platformErrors: errors),
            baseline: baseline.map { Fixtures.sample(requests: $0) })
    }

    @Test("the stage's hosts' samples add up; the old version on every host reporting the stage is the baseline")
    func combinesHosts() throws {
        let stages = RolloutPlan.fleetStages(cohorts: try Self.cohorts(), hosts: Self.hosts)
        var machine = try RolloutMachine(kind: .runtime, targetVersion: 2, previousVersion: 1, stages: stages, now: 0)
        _ = try machine.start(now: 1)
        let hosts = [
            FleetStageReports.HostReport(host: "h1", report: Self.report(stage: 0, requests: 40, errors: 4, baseline: 45), fresh: true),
            FleetStageReports.HostReport(host: "h2", report: Self.report(stage: 0, requests: 0, baseline: 120), fresh: true),
            FleetStageReports.HostReport(host: "h3", report: Self.report(stage: 0, requests: 0, baseline: 80), fresh: true),
        ]
        guard case .report(let combined) = FleetStageReports.combine(rollout: 7, machine: machine, hosts: hosts) else {
            Issue.record("no combined report")
            return
        }
        #expect(combined.sample.requests == 40 && combined.sample.platformErrors == 4, "only the canary host's slots")
        #expect(combined.baseline?.requests == 245, "the old version on every host")

        var away = hosts
        away[0].fresh = false
        #expect(FleetStageReports.combine(rollout: 7, machine: machine, hosts: away) == .away(["h1"]))
        var behind = hosts
        behind[0].report = nil
        #expect(FleetStageReports.combine(rollout: 7, machine: machine, hosts: behind) == .waiting(["h1"]))
        // Cordoned, a host is neither waited for nor counted: the canary stage names
        // h1 alone, so there is nothing left to judge; h3 cordoned leaves it out of
        // the baseline.
        #expect(FleetStageReports.combine(rollout: 7, machine: machine, hosts: away, cordoned: ["h1"]) == .everyHostCordoned)
        guard case .report(let withoutH3) = FleetStageReports.combine(rollout: 7, machine: machine, hosts: hosts, cordoned: ["h3"]) else {
            Issue.record("no combined report with h3 cordoned")
            return
        }
        #expect(withoutH3.sample.requests == 40 && withoutH3.baseline?.requests == 165)
        var otherHostAway = hosts
        otherHostAway[2].fresh = false
        if case .report(let partial) = FleetStageReports.combine(rollout: 7, machine: machine, hosts: otherHostAway) {
            #expect(partial.sample.requests == 40, "a host outside the stage does not hold it up")
        } else {
            Issue.record("a host outside the stage held the stage up")
        }
    }

    @Test("a host away during its stage pauses the rollout, naming it; resuming bakes the stage again")
    func hostAwayPauses() throws {
        let stages = RolloutPlan.fleetStages(cohorts: try Self.cohorts(), hosts: Self.hosts)
        var machine = try RolloutMachine(kind: .runtime, targetVersion: 2, previousVersion: 1, stages: stages, now: 0)
        _ = try machine.start(now: 1)
        let actions = machine.hostsAway(["h1"], now: 5)
        #expect(actions.contains(.paused(.hostsAway(["h1"]))))
        #expect(machine.state == .paused(stage: 0, reason: .hostsAway(["h1"])))
        #expect(machine.decisions.last?.message.contains("h1") == true)
        _ = try machine.resume(now: 20, by: "operator")
        #expect(machine.bakeStartedAt == 20)
    }
}
