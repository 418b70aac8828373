import BulkheadCore
import Testing

@testable import Supervisor

/// The restart policy is pure: time is an argument, so no process and no sleep.
@Suite struct RestartPolicyTests {
    let configuration = CohortConfiguration.Restart(maxRestarts: 3, windowSeconds: 10)

    @Test func firstRestartIsImmediateThenBacksOff() {
        var policy = RestartPolicy(configuration)
        let delays = [100, 100.1, 100.2].map { policy.workerExited(at: $0).delay }
        #expect(delays == [0, 0.05, 0.1])
        #expect(!policy.isDegraded)
        #expect(policy.totalRestarts == 3)
    }

    @Test func tooManyRestartsInTheWindowDegradeThePool() {
        var policy = RestartPolicy(configuration, degradedBackoff: 5)
        for second in 0..<3 { _ = policy.workerExited(at: Double(second)) }
        let fourth = policy.workerExited(at: 3)
        #expect(fourth.becameDegraded)
        #expect(fourth.delay == 5)
        #expect(policy.isDegraded)
        let fifth = policy.workerExited(at: 4)
        #expect(!fifth.becameDegraded, "it says so once")
        #expect(fifth.delay == 5)
    }

    @Test func restartsOutsideTheWindowAreForgotten() {
        var policy = RestartPolicy(configuration)
        for second in [0.0, 20, 40, 60, 80] {
            let delay = policy.workerExited(at: second).delay
            #expect(delay == 0, "one restart per window is always immediate")
        }
        #expect(!policy.isDegraded)
    }

    @Test func aDegradedPoolRecoversAfterAQuietWindow() {
        var policy = RestartPolicy(configuration)
        for second in 0..<4 { _ = policy.workerExited(at: Double(second)) }
        #expect(policy.isDegraded)
        let early = policy.tick(at: 8)
        #expect(!early, "restarts are still in the window")
        let quiet = policy.tick(at: 14)
        #expect(quiet, "a whole window without restarts")
        #expect(!policy.isDegraded)
        let again = policy.tick(at: 15)
        #expect(!again, "recovery is reported once")
    }

    @Test func backoffIsCapped() {
        var policy = RestartPolicy(CohortConfiguration.Restart(maxRestarts: 100, windowSeconds: 1000), maxBackoff: 1)
        var last = 0.0
        for step in 0..<40 { last = policy.workerExited(at: Double(step) * 0.01).delay }
        #expect(last == 1)
    }
}
