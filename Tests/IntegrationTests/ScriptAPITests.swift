#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import LoadClient
import Testing

/// The customer API and the durable store, end to end.
@Suite(.serialized) struct ScriptAPITests {
    /// Asks the pool until every one of its workers has answered with `expected`
    /// in the body; returns the seconds it took.
    func liveOnEveryWorker(_ host: HostHarness, pool: String, customer: String, script: String, expected: String,
                           timeout: Double = 10) throws -> Double? {
        let port = try host.pool(pool).port
        let workers = Set(try host.pool(pool).workers.map { String($0.pid) })
        var seen: Set<String> = []
        return waitFor(timeout: timeout, interval: 0.002) {
            // Fresh connections spread over the workers; keep asking until each has answered.
            guard let answer = httpGet(port: port, host: "\(script).\(customer).localhost"),
                  let worker = answer.headers["x-bulkhead-worker"]
            else { return false }
            if answer.body.contains(expected) {
                seen.insert(worker)
            } else {
                seen.remove(worker)
            }
            return seen.isSuperset(of: workers)
        }
    }

    @Test func uploadGoesLiveThenVersionsAndRollback() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("acme", cohort: "pro")
        let other = try host.addCustomer("globex", cohort: "pro")

        let upload1 = try host.api("PUT", "/v1/scripts/greet", token: token, body: Array("function handle(req) return 'greet v1' end".utf8))
        #expect(upload1.status == 201, "\(upload1.body)")
        #expect(upload1.body.contains("\"version\":1"))
        let live1 = try liveOnEveryWorker(host, pool: "pro", customer: "acme", script: "greet", expected: "greet v1")
        print("upload v1 live on every pro worker after \(live1.map { String(format: "%.0f ms", $0 * 1000) } ?? "never") (goal ≤ 1 s)")
        #expect(live1 != nil)

        let started = Date()
        let upload2 = try host.api("PUT", "/v1/scripts/greet", token: token, body: Array("function handle(req) return 'greet v2' end".utf8))
        #expect(upload2.status == 201)
        let live2 = try liveOnEveryWorker(host, pool: "pro", customer: "acme", script: "greet", expected: "greet v2")
        print("upload v2 live on every pro worker \(String(format: "%.0f ms", Date().timeIntervalSince(started) * 1000)) after the PUT was sent")
        #expect(live2 != nil)

        let versions = try host.api("GET", "/v1/scripts/greet/versions", token: token)
        #expect(versions.status == 200)
        #expect(versions.body.contains("\"version\":1") && versions.body.contains("\"version\":2"))

        let rollback = try host.api("POST", "/v1/scripts/greet/rollback", token: token)
        #expect(rollback.status == 200, "\(rollback.body)")
        #expect(rollback.body.contains("\"active_version\":1"))
        let live3 = try liveOnEveryWorker(host, pool: "pro", customer: "acme", script: "greet", expected: "greet v1")
        print("rollback to v1 live on every pro worker after \(live3.map { String(format: "%.0f ms", $0 * 1000) } ?? "never")")
        #expect(live3 != nil)

        // Another customer sees nothing of acme's scripts; no token is 401.
        for (method, path) in [("GET", "/v1/scripts/greet"), ("GET", "/v1/scripts/greet/versions"),
                               ("GET", "/v1/scripts/greet/logs"), ("POST", "/v1/scripts/greet/rollback"),
                               ("DELETE", "/v1/scripts/greet")] {
            #expect(try host.api(method, path, token: other).status == 404, "\(method) \(path) with another customer's token")
            #expect(try host.api(method, path, token: nil).status == 401, "\(method) \(path) without a token")
            #expect(try host.api(method, path, token: "bht_0000").status == 401, "\(method) \(path) with a wrong token")
        }
        let list = try host.api("GET", "/v1/scripts", token: other)
        #expect(list.status == 200)
        #expect(!list.body.contains("greet"))
        // And acme's script still answers, unchanged by the other customer's attempts.
        #expect(httpGet(port: try host.pool("pro").port, host: "greet.acme.localhost")?.body == "greet v1")
    }

    @Test func rotatingATokenAndRemovingACustomer() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("acme", cohort: "pro")
        let other = try host.addCustomer("globex", cohort: "pro")
        for (customer, key) in [("acme", token), ("globex", other)] {
            let upload = try host.api("PUT", "/v1/scripts/greet", token: key, body: Array("function handle(req) return 'hi \(customer)' end".utf8))
            #expect(upload.status == 201, "\(upload.body)")
            #expect(try liveOnEveryWorker(host, pool: "pro", customer: customer, script: "greet", expected: "hi \(customer)") != nil)
        }

        // The customer rotates its own token: the old one is refused at once.
        let own = try host.api("POST", "/v1/token", token: token)
        #expect(own.status == 200, "\(own.body)")
        let second = try #require(try JSONSerialization.jsonObject(with: Data(own.body.utf8)) as? [String: String])
        #expect(second["name"] == "acme" && second["cohort"] == "pro")
        let secondToken = try #require(second["token"])
        #expect(secondToken.hasPrefix("bht_") && secondToken != token)
        #expect(try host.api("GET", "/v1/scripts", token: token).status == 401)
        #expect(try host.api("GET", "/v1/scripts", token: secondToken).status == 200)
        #expect(try host.api("POST", "/v1/token", token: nil).status == 401)

        // The operator rotates it with the CLI: the token alone on the last line.
        let rotated = try host.cli(["customer", "rotate-token", "acme"])
        #expect(rotated.status == 0, "\(rotated.output)")
        let thirdToken = try #require(rotated.output.split(separator: "\n").last.map(String.init))
        #expect(thirdToken.hasPrefix("bht_") && thirdToken != secondToken)
        #expect(try host.api("GET", "/v1/scripts", token: secondToken).status == 401)
        let scripts = try host.api("GET", "/v1/scripts", token: thirdToken)
        #expect(scripts.status == 200 && scripts.body.contains("greet"))
        #expect(try host.api("POST", "/v1/admin/customers/ghost/token", token: try host.adminToken()).status == 404)
        // Rotation leaves the script serving.
        #expect(httpGet(port: try host.pool("pro").port, host: "greet.acme.localhost")?.body == "hi acme")

        // Removal: refused without --yes, then done; the script leaves the pool.
        let refused = try host.cli(["customer", "remove", "acme"])
        #expect(refused.status != 0 && refused.output.contains("every script"), "\(refused.output)")
        #expect(httpGet(port: try host.pool("pro").port, host: "greet.acme.localhost")?.body == "hi acme")
        let removed = try host.cli(["customer", "remove", "acme", "--yes"])
        #expect(removed.status == 0, "\(removed.output)")
        let port = try host.pool("pro").port
        let gone = waitFor(timeout: 5, interval: 0.01) {
            guard let answer = httpGet(port: port, host: "greet.acme.localhost") else { return false }
            return answer.status == 404 && answer.headers["x-bulkhead-error"] == "no-script"
        }
        print("removed customer's script unloaded after \(gone.map { String(format: "%.0f ms", $0 * 1000) } ?? "never")")
        #expect(gone != nil)
        #expect(try host.api("GET", "/v1/scripts", token: thirdToken).status == 401)
        let list = try host.cli(["customer", "list"])
        #expect(list.status == 0)
        #expect(!list.output.contains("acme") && list.output.contains("globex"), "\(list.output)")
        #expect(try host.api("DELETE", "/v1/admin/customers/acme", token: try host.adminToken()).status == 404)
        // The other customer of the pool is untouched.
        #expect(httpGet(port: port, host: "greet.globex.localhost")?.body == "hi globex")

        // The name again: a fresh customer, its first upload is version 1.
        let again = try host.addCustomer("acme", cohort: "pro")
        let upload = try host.api("PUT", "/v1/scripts/greet", token: again, body: Array("function handle(req) return 'hi again' end".utf8))
        #expect(upload.status == 201 && upload.body.contains("\"version\":1"), "\(upload.body)")
        #expect(try liveOnEveryWorker(host, pool: "pro", customer: "acme", script: "greet", expected: "hi again") != nil)
    }

    @Test func aScriptsDirectoryFileWinsOverTheAPI() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("acme", cohort: "pro")
        let file = "function handle(req) return 'from the file' end"
        try host.writeScript(customer: "acme", name: "dir", source: file)
        let port = try host.pool("pro").port
        #expect(waitFor(timeout: 10) { httpGet(port: port, host: "dir.acme.localhost")?.body == "from the file" } != nil)
        // A poll records the file once it has not changed for a second; from then on
        // the polls only stat it.
        Thread.sleep(forTimeInterval: 2.5)

        /// The store's active version and source of the script (nil: none).
        func stored() -> (version: Int, source: String)? {
            guard let answer = try? host.api("GET", "/v1/scripts/dir", token: token), answer.status == 200,
                  let json = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
                  let script = json["script"] as? [String: Any], let version = script["active_version"] as? Int,
                  let source = json["source"] as? String
            else { return nil }
            return (version, source)
        }
        let upload = try host.api("PUT", "/v1/scripts/dir", token: token, body: Array("function handle(req) return 'from the API' end".utf8))
        #expect(upload.status == 201, "\(upload.body)")
        // The version the upload made, from its answer: reading the store back instead
        // races the poll, which may have stored the file again already (then the
        // store's version is the file's, and nothing newer would come).
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(upload.body.utf8)) as? [String: Any])
        let uploaded = try #require(answer["version"] as? Int, "\(upload.body)")
        let afterUpload = waitFor(timeout: 10) { stored().map { $0.version > uploaded && $0.source == file } ?? false }
        #expect(afterUpload != nil, "the file is stored again after an upload")

        #expect(try host.api("DELETE", "/v1/scripts/dir", token: token).status == 204)
        let afterDelete = waitFor(timeout: 10) { stored()?.source == file }
        #expect(afterDelete != nil, "the file is stored again after a delete")
        #expect(waitFor(timeout: 10) { httpGet(port: port, host: "dir.acme.localhost")?.body == "from the file" } != nil)
        print("the scripts directory's file back after an upload in \(afterUpload.map { String(format: "%.2f s", $0) } ?? "never"), after a delete in \(afterDelete.map { String(format: "%.2f s", $0) } ?? "never")")
    }

    @Test func customersTomlIsReadAsTOMLAndAFileThatIsNotChangesNothing() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let map = host.scripts + "/customers.toml"
        let good = try String(contentsOfFile: map, encoding: .utf8)
        try host.writeScript(customer: "newco", name: "hello", source: "function handle(req) return 'hello newco' end")
        let pro = try host.pool("pro").port
        let free = try host.pool("free").port

        // `newco = pro` is not TOML (the value is not quoted): the whole file is
        // refused, with the file and line in the log, and nothing changes.
        try (good + "newco = pro\n").write(toFile: map, atomically: true, encoding: .utf8)
        // The poller is control's: it logs to control's log.
        let refused = waitFor(timeout: 10, interval: 0.05) { host.controlOutput().contains("customers.toml:4: not valid TOML") }
        #expect(refused != nil, "\(host.controlOutput().suffix(2000))")
        Thread.sleep(forTimeInterval: 1)
        #expect(httpGet(port: pro, host: "hello.newco.localhost")?.body != "hello newco", "a customer from a refused file")
        #expect(httpGet(port: free, host: "echo.c-free.localhost")?.body.hasPrefix("echo /") == true,
                "the customers already assigned still serve")

        // A quoted key is TOML: the customer is added.
        try (good + "\"newco\" = \"pro\"\n").write(toFile: map, atomically: true, encoding: .utf8)
        let added = waitFor(timeout: 10) { httpGet(port: pro, host: "hello.newco.localhost")?.body == "hello newco" }
        #expect(added != nil, "a quoted customer key is read")
        print("customers.toml: refused in \(refused.map { String(format: "%.2f s", $0) } ?? "never"), a quoted key served in \(added.map { String(format: "%.2f s", $0) } ?? "never")")
    }

    @Test func badUploadsAreRefusedAndNothingIsStored() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("acme", cohort: "free")
        let good = try host.api("PUT", "/v1/scripts/s", token: token, body: Array("function handle(req) return 'good' end".utf8))
        #expect(good.status == 201)

        let cases: [(String, [UInt8], Int, String)] = [
            ("syntax error", Array("function handle(req)\n  return 'x'\n\nlocal = 1\nend".utf8), 400, "s.lua:4:"),
            ("oversized", Array(repeating: UInt8(ascii: "-"), count: 1024 * 1024 + 1), 413, "too-large"),
            ("not UTF-8", [0x66, 0xff, 0xfe, 0x0a], 400, "not-utf8"),
            ("no handle", Array("local x = 1".utf8), 400, "handle"),
            ("top level loops", Array("while true do end".utf8), 400, "limit-cpu"),
            ("top level allocates", Array("local t = {} while true do t[#t+1] = string.rep('x', 4096) end".utf8), 400, "limit-memory"),
        ]
        for (label, body, status, fragment) in cases {
            let answer = try host.api("PUT", "/v1/scripts/s", token: token, body: body)
            print("\(label): \(answer.status) \(answer.body)")
            #expect(answer.status == status, "\(label)")
            #expect(answer.body.contains(fragment), "\(label): \(answer.body)")
        }
        #expect(try host.api("PUT", "/v1/scripts/s", token: nil, body: Array("x".utf8)).status == 401)
        #expect(try host.api("PUT", "/v1/scripts/s", token: "bht_wrong", body: Array("x".utf8)).status == 401)
        let versions = try host.api("GET", "/v1/scripts/s/versions", token: token)
        #expect(versions.body.contains("\"version\":1") && !versions.body.contains("\"version\":2"), "only the good upload is stored")
        #expect(httpGet(port: try host.pool("free").port, host: "s.acme.localhost")?.body == "good")
    }

    @Test(arguments: [SIGTERM, SIGKILL])
    func acknowledgedUploadsSurviveARestart(signal: Int32) throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("acme", cohort: "enterprise")
        let acknowledged = LockedList()
        let port = try host.apiPort()
        let done = DispatchSemaphore(value: 0)
        // A burst of uploads from two threads, each of a different script.
        for thread in 0..<2 {
            Thread.detachNewThread {
                for index in 0..<40 {
                    let name = "s\(thread)-\(index % 5)"
                    let body = Array("function handle(req) return '\(name) upload \(index)' end".utf8)
                    guard let answer = httpRequest(port: port, method: "PUT", path: "/v1/scripts/\(name)",
                                                   headers: ["Authorization": "Bearer \(token)"], body: body, timeout: 5)
                    else { break }
                    if answer.status == 201 { acknowledged.append((name, "\(name) upload \(index)")) }
                    if answer.status == 429 { usleep(200_000) }
                }
                done.signal()
            }
        }
        usleep(1_500_000)
        host.signalSupervisor(signal)
        done.wait()
        done.wait()
        let uploads = acknowledged.items
        print("signal \(signal): \(uploads.count) uploads acknowledged before the supervisor went down")
        #expect(!uploads.isEmpty)
        try host.start()
        // Each script serves its last acknowledged upload, or a later one: an upload
        // can be stored and its 201 lost to the signal, never the other way round.
        var last: [String: String] = [:]
        for (name, body) in uploads { last[name] = body }
        func uploadIndex(_ body: String, of name: String) -> Int? {
            body.hasPrefix("\(name) upload ") ? Int(body.dropFirst("\(name) upload ".count)) : nil
        }
        let poolPort = try host.pool("enterprise").port
        for (name, body) in last {
            let answer = httpGet(port: poolPort, host: "\(name).acme.localhost")
            let served = answer.flatMap { uploadIndex($0.body, of: name) }
            let acknowledged = uploadIndex(body, of: name) ?? Int.max
            #expect(served.map { $0 >= acknowledged } == true,
                    "\(name) serves \(answer?.body ?? "nothing"), not its last acknowledged upload (\(body)) or a later one")
        }
        let listing = try host.api("GET", "/v1/scripts", token: token)
        #expect(listing.status == 200)
        for name in last.keys { #expect(listing.body.contains("\"name\":\"\(name)\"")) }
    }

    @Test func metricsParseAndMoveWithTraffic() throws {
        let host = try HostHarness.standard()
        defer { host.stop() }
        try host.start()
        func requests(_ text: String, pool: String) -> Double? {
            for line in text.split(separator: "\n") where line.hasPrefix("bulkhead_requests_total{pool=\"\(pool)\"}") {
                return Double(line.split(separator: " ").last ?? "")
            }
            return nil
        }
        let before = try host.api("GET", "/metrics", token: nil)
        #expect(before.status == 200)
        // Every line is a comment or `name{labels} value`.
        for line in before.body.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            #expect(parts.count == 2 && Double(parts[1]) != nil, "not Prometheus text: \(line)")
        }
        let start = requests(before.body, pool: "free") ?? -1
        _ = try LoadRun.run(LoadConfiguration(
            targets: [try host.target("free", pool: "free", customer: "c-free")], stop: .requests(200)))
        usleep(500_000)
        let after = try host.api("GET", "/metrics", token: nil)
        let end = requests(after.body, pool: "free") ?? -1
        print("bulkhead_requests_total{pool=\"free\"}: \(start) → \(end)")
        #expect(end >= start + 200)
        #expect(after.body.contains("bulkhead_request_duration_seconds_bucket{pool=\"free\",le=\"+Inf\"}"))
        let scriptLine = after.body.split(separator: "\n").first { $0.hasPrefix("bulkhead_script_requests_total{") && $0.contains("customer=\"c-free\"") }
        print("per script: \(scriptLine ?? "missing")")
        #expect((scriptLine?.split(separator: " ").last).flatMap { Double($0) } ?? 0 >= 200)
    }
}

/// A list several threads append to.
final class LockedList: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [(String, String)] = []

    func append(_ item: (String, String)) {
        lock.lock()
        storage.append(item)
        lock.unlock()
    }

    var items: [(String, String)] {
        lock.lock()
        defer { lock.unlock() }
        return storage
    }
}
