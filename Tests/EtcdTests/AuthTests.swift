import Etcd
import Foundation
import Testing

@Suite("etcd over TLS with client certificates, users and roles", .serialized)
struct AuthTests {
    @Test("per-host roles: host-a writes its own keys, reads desired state, cannot write host-b's; a CN certificate is refused once auth is on")
    func perHostRoles() async throws {
        try await withEtcd(tls: true) { cluster, setup in
            // Before auth is on, anything signed by the CA may do anything (here over
            // TLS with a certificate of CN root).
            #expect(setup.currentEndpoint.scheme == "https")
            _ = try await setup.put("desired/version", "7")
            try await setup.addUser("root", password: "root-secret")
            try await setup.grantRole(user: "root", role: "root")
            for host in ["a", "b"] {
                try await setup.addRole("host-\(host)")
                try await setup.grantPermission(role: "host-\(host)", .readWrite, key: "hosts/\(host)/", prefix: true)
                try await setup.grantPermission(role: "host-\(host)", .read, key: "desired/", prefix: true)
                try await setup.addUser("host-\(host)", password: "secret-\(host)")
                try await setup.grantRole(user: "host-\(host)", role: "host-\(host)")
            }
            try await setup.enableAuth()

            // etcd 3.4's gateway cannot take a certificate's CN as the user: once auth
            // is on, it refuses any certificate with a CN, whatever the call.
            do {
                _ = try await setup.get("desired/version")
                Issue.record("a certificate with a CN was answered through the gateway with auth on")
            } catch {
                print("CN certificate with auth on: \(error)")
                guard case .authFailed(let message)? = error as? EtcdError else { Issue.record("\(error)"); return }
                #expect(message.contains("CN"))
            }

            let certificates = try #require(cluster.certificates)
            func client(_ user: String?) throws -> EtcdClient {
                try EtcdClient(
                    endpoints: cluster.endpoints, tls: try certificates.clientWithoutCommonName(user ?? "anonymous"),
                    credentials: user.map { EtcdCredentials(user: $0, password: $0 == "root" ? "root-secret" : "secret-\($0.suffix(1))") })
            }
            let root = try client("root")
            let hostA = try client("host-a")
            let anonymous = try client(nil)
            let wrongPassword = try EtcdClient(
                endpoints: cluster.endpoints, tls: try certificates.clientWithoutCommonName("wrong"),
                credentials: EtcdCredentials(user: "host-b", password: "guess"))

            _ = try await hostA.put("hosts/a/alive", "yes")
            #expect(try await hostA.get("desired/version").first?.valueString == "7")
            #expect(try await hostA.range(prefix: "hosts/a/").kvs.count == 1)
            await #expect(throws: EtcdError.permissionDenied) { try await hostA.put("hosts/b/alive", "forged") }
            await #expect(throws: EtcdError.permissionDenied) { try await hostA.put("desired/version", "8") }
            await #expect(throws: EtcdError.permissionDenied) { try await hostA.delete(prefix: "hosts/") }
            await #expect(throws: EtcdError.permissionDenied) {
                try await hostA.txn(compare: [], success: [.put("hosts/a/x", "1"), .put("hosts/b/x", "1")])
            }
            #expect(try await hostA.get("hosts/a/x").first == nil)
            var events = 0
            do {
                for try await answer in hostA.watch("hosts/b/", prefix: true) { events += answer.events.count }
                Issue.record("a watch on another host's keys was not refused")
            } catch {
                print("host-a watching hosts/b/: \(error)")
                #expect(error as? EtcdError == .permissionDenied)
            }
            #expect(events == 0)

            do {
                _ = try await anonymous.get("desired/version")
                Issue.record("a client with no user could read")
            } catch {
                print("no user: \(error)")
            }
            do {
                _ = try await wrongPassword.get("desired/version")
                Issue.record("a wrong password could read")
            } catch {
                print("wrong password: \(error)")
                guard case .authFailed? = error as? EtcdError else { Issue.record("\(error)"); return }
            }

            // root writes everywhere; the refused writes left nothing.
            _ = try await root.put("hosts/b/alive", "yes")
            #expect(try await root.get("hosts/b/alive").first?.valueString == "yes")
            #expect(try await root.get("desired/version").first?.valueString == "7")
            #expect(try await root.get("hosts/b/x").first == nil)
            try await root.disableAuth()
            for client in [root, hostA, anonymous, wrongPassword] { await client.shutdown() }
        }
    }

    @Test("plain HTTP to a TLS member, or a CA the member does not trust: unavailable, with the reason")
    func tlsRefused() async throws {
        try await withEtcd(tls: true) { cluster, _ in
            let timeouts = EtcdConfiguration.Timeouts(connect: .seconds(2), request: .seconds(2), failover: .milliseconds(200))
            let plain = try EtcdClient(endpoints: cluster.members.map { "http://127.0.0.1:\($0.clientPort)" }, timeouts: timeouts)
            let other = try TestCertificates(directory: cluster.root + "/other-ca")
            let wrongCA = try EtcdClient(endpoints: cluster.endpoints, tls: try other.client("root"), timeouts: timeouts)
            for (name, client) in [("plain HTTP", plain), ("another CA", wrongCA)] {
                do {
                    _ = try await client.get("k")
                    Issue.record("\(name) was answered")
                } catch {
                    print("TLS \(name): \(error)")
                    guard case .unavailable? = error as? EtcdError else { Issue.record("\(error)"); continue }
                }
                await client.shutdown()
            }
            #expect(throws: EtcdError.self) {
                try EtcdClient(endpoints: cluster.endpoints, tls: EtcdTLS(caFile: "/nonexistent/ca.crt"))
            }
        }
    }
}
