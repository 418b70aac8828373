import Etcd
import Foundation
import Testing

@Suite("etcd leases", .serialized)
struct LeaseTests {
    @Test("grant, keep-alive, time to live and revoke answer etcd's TTLs; a revoked lease is gone")
    func leaseCalls() async throws {
        try await withEtcd { _, client in
            let lease = try await client.grantLease(ttl: 30)
            #expect(lease.id != 0 && lease.ttl == 30)
            _ = try await client.put("l/a", "1", lease: lease.id)
            let kept = try await client.keepAliveOnce(lease.id)
            #expect(kept.id == lease.id && kept.ttl == 30 && kept.isAlive)
            let live = try await client.leaseTimeToLive(lease.id, keys: true)
            #expect(live.grantedTTL == 30 && live.ttl > 0 && live.ttl <= 30)
            #expect(live.keys == [Array("l/a".utf8)])

            try await client.revokeLease(lease.id)
            #expect(try await client.get("l/a").first == nil)
            let gone = try await client.keepAliveOnce(lease.id)
            #expect(!gone.isAlive)
            #expect(try await client.leaseTimeToLive(lease.id).ttl == -1)
            await #expect(throws: EtcdError.leaseNotFound) { try await client.revokeLease(lease.id) }
            await #expect(throws: EtcdError.leaseNotFound) { try await client.put("l/b", "1", lease: lease.id) }

            let chosen = try await client.grantLease(ttl: 10, id: 0x1234_5678_9abc)
            #expect(chosen.id == 0x1234_5678_9abc)
        }
    }

    @Test("a kept lease holds its key past several TTLs; once the keeper stops, the key goes after the TTL")
    func keeperHoldsThenExpires() async throws {
        try await withEtcd { _, client in
            // A TTL long enough that a loaded machine (every suite at once on 2 cores)
            // renews in time, held for more than twice as long.
            let ttl: Int64 = 4
            let lease = try await client.grantLease(ttl: ttl)
            let keeper = client.keepAlive(lease: lease.id, ttl: lease.ttl)
            _ = try await client.put("host/alive", "yes", lease: lease.id)
            try await Task.sleep(for: .seconds(9))
            #expect(keeper.loss == nil)
            #expect(try await client.get("host/alive").first?.lease == lease.id)
            let renewals = keeper.renewals
            print("lease keeper: \(renewals.count) renewals in 9 s for a \(ttl) s TTL (last TTL \(renewals.lastTTL))")
            #expect(renewals.count >= 3)

            keeper.stop()
            #expect(await keeper.lost() == nil)
            let stopped = ContinuousClock.now
            var goneAfter: Duration?
            while ContinuousClock.now - stopped < .seconds(Int(ttl) * 10) {
                if try await client.get("host/alive").first == nil {
                    goneAfter = ContinuousClock.now - stopped
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            let after = try #require(goneAfter, "the key outlived its lease")
            print("lease keeper stopped: key gone after \(String(format: "%.2f", after.seconds)) s (TTL \(ttl) s)")
        }
    }

    @Test("a keeper reports the loss when its lease is revoked under it")
    func keeperReportsLoss() async throws {
        try await withEtcd { _, client in
            let lease = try await client.grantLease(ttl: 3)
            let keeper = client.keepAlive(lease: lease.id, ttl: lease.ttl)
            try await client.revokeLease(lease.id)
            let start = ContinuousClock.now
            let loss = await keeper.lost()
            print("lease keeper: revoked lease reported lost after \(String(format: "%.2f", (ContinuousClock.now - start).seconds)) s")
            #expect(loss == .expired)
            #expect(keeper.loss == .expired)
        }
    }
}
