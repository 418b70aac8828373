import Testing

@testable import ControlAPI

/// The control API's connection cap: who gets in and who is displaced.
@Suite struct APIConnectionTableTests {
    func admitted(_ admission: APIConnectionTable.Admission) -> (id: Int, evicting: [Int])? {
        guard case .admit(let id, let evicting) = admission else { return nil }
        return (id, evicting)
    }

    @Test func underTheCapEveryConnectionIsAdmitted() {
        var table = APIConnectionTable(maxConnections: 3, maxPerPeer: 3)
        for _ in 0..<3 {
            #expect(admitted(table.open(peer: "10.0.0.1"))?.evicting == [])
        }
        #expect(table.count == 3)
    }

    @Test func atTheCapTheLongestIdleConnectionMakesRoom() throws {
        var table = APIConnectionTable(maxConnections: 3, maxPerPeer: 3)
        let first = try #require(admitted(table.open(peer: "a"))).id
        let second = try #require(admitted(table.open(peer: "b"))).id
        let third = try #require(admitted(table.open(peer: "c"))).id
        // The first is answering a request: not a candidate.
        table.requestStarted(first)
        let fourth = try #require(admitted(table.open(peer: "d")))
        #expect(fourth.evicting == [second])
        // The third finished a request just now: idle since then, so newer than the fourth.
        table.requestStarted(third)
        table.requestFinished(third)
        let fifth = try #require(admitted(table.open(peer: "e")))
        #expect(fifth.evicting == [fourth.id])
        #expect(table.count == 3)
        // A displaced connection's close changes nothing.
        table.closed(second)
        #expect(table.count == 3)
    }

    @Test func whenEveryConnectionIsInARequestTheNewOneIsRefused() throws {
        var table = APIConnectionTable(maxConnections: 2, maxPerPeer: 2)
        for peer in ["a", "b"] {
            table.requestStarted(try #require(admitted(table.open(peer: peer))).id)
        }
        #expect(table.open(peer: "c") == .refuse)
        #expect(table.count == 2)
    }

    @Test func aPeerAtItsLimitDisplacesOnlyItsOwnConnections() throws {
        var table = APIConnectionTable(maxConnections: 10, maxPerPeer: 2)
        let other = try #require(admitted(table.open(peer: "other"))).id
        let own1 = try #require(admitted(table.open(peer: "flood"))).id
        _ = try #require(admitted(table.open(peer: "flood")))
        let third = try #require(admitted(table.open(peer: "flood")))
        #expect(third.evicting == [own1], "its own oldest idle connection, not the older one of another peer")
        #expect(table.perPeer["flood"] == 2)
        #expect(table.entries[other] != nil)
    }

    @Test func aPeerWhoseConnectionsAreAllBusyIsRefused() throws {
        var table = APIConnectionTable(maxConnections: 10, maxPerPeer: 1)
        table.requestStarted(try #require(admitted(table.open(peer: "p"))).id)
        #expect(table.open(peer: "p") == .refuse)
        #expect(admitted(table.open(peer: "q")) != nil)
    }

    @Test func countsFollowCloses() throws {
        var table = APIConnectionTable(maxConnections: 2, maxPerPeer: 2)
        let one = try #require(admitted(table.open(peer: "p"))).id
        let two = try #require(admitted(table.open(peer: "p"))).id
        table.closed(one)
        table.closed(two)
        #expect(table.count == 0)
        #expect(table.perPeer.isEmpty)
        #expect(admitted(table.open(peer: "p"))?.evicting == [])
    }
}

/// The cap is computed from the descriptor limit, keeping the supervisor's reserve.
@Suite struct APIConnectionLimitsTests {
    @Test func defaultIsAQuarterOfTheLimitAtMost1024() {
        let small = APIConnectionLimits.resolve(
            maxConnections: nil, maxPerPeer: nil, headTimeout: nil, descriptorLimit: 256, descriptorsInUse: 40, reserved: 90)
        #expect(small.limits == APIConnectionLimits(maxConnections: 64, maxPerPeer: 32, headTimeout: 5))
        #expect(small.warnings.isEmpty)
        let large = APIConnectionLimits.resolve(
            maxConnections: nil, maxPerPeer: nil, headTimeout: nil, descriptorLimit: 65_536, descriptorsInUse: 40, reserved: 90)
        #expect(large.limits == APIConnectionLimits(maxConnections: 1024, maxPerPeer: 256, headTimeout: 5))
    }

    @Test func theReserveStaysFreeWhateverIsAsked() {
        // 100 − 30 in use − 50 kept free leaves 20, for the connections and those
        // still closing after being displaced.
        let tight = APIConnectionLimits.resolve(
            maxConnections: nil, maxPerPeer: nil, headTimeout: nil, descriptorLimit: 100, descriptorsInUse: 30, reserved: 50)
        #expect(tight.limits.maxConnections == 14)
        #expect(tight.limits.acceptCeiling <= 20)
        let asked = APIConnectionLimits.resolve(
            maxConnections: 500, maxPerPeer: 400, headTimeout: 2, descriptorLimit: 256, descriptorsInUse: 40, reserved: 90)
        #expect(asked.limits == APIConnectionLimits(maxConnections: 108, maxPerPeer: 108, headTimeout: 2))
        #expect(asked.limits.acceptCeiling <= 256 - 40 - 90)
        #expect(asked.warnings.count == 1)
        #expect(asked.warnings.first?.contains("--api-max-connections 500") == true)
        let none = APIConnectionLimits.resolve(
            maxConnections: nil, maxPerPeer: nil, headTimeout: nil, descriptorLimit: 64, descriptorsInUse: 40, reserved: 90)
        #expect(none.limits.maxConnections == 1)
        #expect(none.warnings.first?.contains("ulimit -n") == true)
    }
}
