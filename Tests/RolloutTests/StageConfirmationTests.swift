import Rollout
import Testing

@Suite struct StageConfirmationTests {
    @Test func aHostFallsBackOnceOneWayFailsPastTheDeadline() {
        #expect(!StageConfirmation.suspended(false, cutOffSince: [nil, nil], now: 100, deadline: 10))
        #expect(!StageConfirmation.suspended(false, cutOffSince: [95, nil], now: 100, deadline: 10))
        #expect(StageConfirmation.suspended(false, cutOffSince: [90, nil], now: 100, deadline: 10))
        #expect(StageConfirmation.suspended(false, cutOffSince: [99, 85], now: 100, deadline: 10))
    }

    @Test func aHostComesBackOnlyOnceBothWaysWorkAgain() {
        // The reconnection fleet-rollout saw: reports failing since 34 and the feed
        // since 36; at 44 the reports' failure passed the deadline; at 45 the reports
        // came back while the feed was still cut off. Coming back then made the canary
        // flap (back at 45, away again at 46 when the feed's failure passed 10 s).
        var suspended = StageConfirmation.suspended(false, cutOffSince: [36, 34], now: 44, deadline: 10)
        #expect(suspended)
        suspended = StageConfirmation.suspended(suspended, cutOffSince: [36, nil], now: 45, deadline: 10)
        #expect(suspended, "the feed is still cut off: the host stays on the last completed versions")
        suspended = StageConfirmation.suspended(suspended, cutOffSince: [36, nil], now: 46, deadline: 10)
        #expect(suspended)
        suspended = StageConfirmation.suspended(suspended, cutOffSince: [nil, nil], now: 47, deadline: 10)
        #expect(!suspended, "both work: the host follows the fleet again")
    }
}
