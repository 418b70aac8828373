#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store
import Testing

/// What the host promises about secrets and isolation, checked on a live host: tokens
/// hashed at rest, the admin socket and token files 0600, one customer unable to reach
/// another's scripts, and nothing a script or a request controls reaching the host's
/// logs unescaped.
@Suite(.serialized) struct SecurityTests {
    static func bytes(of path: String) -> [UInt8] {
        (FileManager.default.contents(atPath: path)).map { [UInt8]($0) } ?? []
    }

    static func contains(_ haystack: [UInt8], _ needle: String) -> Bool {
        let pattern = Array(needle.utf8)
        guard !pattern.isEmpty, haystack.count >= pattern.count else { return false }
        let first = pattern[0]
        var index = 0
        while index <= haystack.count - pattern.count {
            if haystack[index] == first && haystack[index..<(index + pattern.count)].elementsEqual(pattern) { return true }
            index += 1
        }
        return false
    }

    /// The store file and its -wal and -shm, as one byte string.
    static func storeBytes(_ host: HostHarness) -> [UInt8] {
        let path = host.data.root + "/bulkhead.sqlite"
        return bytes(of: path) + bytes(of: path + "-wal") + bytes(of: path + "-shm")
    }

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    // MARK: Tokens at rest

    @Test func tokensAreStoredOnlyAsTheirHashes() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1)])
        host.serveArguments = ["--demo"]
        defer { host.stop() }
        try host.start()
        // Tokens made every way there is: the CLI, the admin API, --demo.
        var tokens = [try host.addCustomer("alice", cohort: "free"), try host.addCustomer("bob", cohort: "free")]
        let created = try host.api("POST", "/v1/admin/customers", token: try host.adminToken(),
                                   body: Array(#"{"name": "carol", "cohort": "free"}"#.utf8))
        #expect(created.status == 201, "\(created.body)")
        let carol = try #require(created.body.split(separator: "\"").drop { $0 != "token" }.dropFirst(2).first.map(String.init))
        tokens.append(carol)
        let demo = try String(contentsOfFile: host.data.root + "/demo-tokens", encoding: .utf8)
        tokens += demo.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        #expect(tokens.count == 4, "alice, bob, carol and demo-free: \(tokens)")
        // Every token works: the store really holds something that matches it.
        for token in tokens {
            #expect(try host.api("GET", "/v1/scripts", token: token).status == 200, "\(token)")
            #expect(try host.api("PUT", "/v1/scripts/mine", token: token, body: Array("function handle() return 'x' end".utf8)).status == 201)
        }
        let admin = try host.adminToken()

        func checkStore(_ when: String) {
            let stored = Self.storeBytes(host)
            #expect(stored.count > 4096, "\(when): the store files are there")
            for token in tokens {
                // Neither the token nor its secret part after the prefix, in any file of the store.
                let secret = String(token.split(separator: "_").last ?? "")
                #expect(!Self.contains(stored, token), "\(when): plaintext token in the store")
                #expect(secret.count >= 32 && !Self.contains(stored, secret), "\(when): the token's secret part in the store")
                // What is there instead: its SHA-256, which is what the API looks up.
                #expect(Self.contains(stored, TokenHash.of(token: token)), "\(when): the hash of \(token) is stored")
            }
            #expect(!Self.contains(stored, admin), "\(when): the admin token is not in the store")
        }
        checkStore("while serving")
        // Nor in the host's logs.
        var logs = host.supervisorOutput()
        for file in (try? FileManager.default.contentsOfDirectory(atPath: host.data.logs)) ?? [] {
            logs += (try? String(contentsOfFile: host.data.logs + "/" + file, encoding: .utf8)) ?? ""
        }
        for token in tokens + [admin] {
            #expect(!logs.contains(token), "a token in the host's logs")
        }
        host.signalSupervisor(SIGTERM)
        checkStore("after a stop")
    }

    /// How the comparison is constant-time is in the unit tests of `constantTimeEquals`;
    /// here: a near miss of a real token (the last digit changed, a byte more, a byte
    /// less, another case) is refused.
    @Test func nearMissesOfATokenAreRefused() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1)])
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("alice", cohort: "free")
        #expect(try host.api("GET", "/v1/scripts", token: token).status == 200)
        let last = token.last == "0" ? "1" : "0"
        for wrong in [String(token.dropLast()) + last, token + "0", String(token.dropLast()), token.uppercased(), " " + token + "x", ""] {
            #expect(try host.api("GET", "/v1/scripts", token: wrong).status == 401, "\(wrong)")
        }
        let admin = try host.adminToken()
        #expect(try host.api("GET", "/v1/admin/status", token: admin).status == 200)
        for wrong in [String(admin.dropLast()), admin + "0", token] {
            #expect(try host.api("GET", "/v1/admin/status", token: wrong).status == 401, "\(wrong)")
        }
    }

    // MARK: File modes

    @Test func adminSocketAndTokenFilesAreOwnerOnly() throws {
        let host = try HostHarness.standard()
        host.serveArguments = ["--demo"]
        defer { host.stop() }
        try host.start()
        let data = host.data
        let expected: [(String, mode_t)] = [
            (data.adminSocket, 0o600),
            (data.root + "/admin.token", 0o600),
            (data.demoTokens, 0o600),
            (data.root + "/bulkhead.sqlite", 0o600),
            (data.root, 0o700),
        ]
        for (path, mode) in expected {
            let actual = Self.mode(path)
            print("\(path): \(actual.map { String($0, radix: 8) } ?? "missing")")
            #expect(actual == mode, "\(path) is \(actual.map { String($0, radix: 8) } ?? "missing"), want \(String(mode, radix: 8))")
        }
        // Nothing in the data directory is readable or writable by others.
        let enumerator = FileManager.default.enumerator(atPath: data.root)
        while let entry = enumerator?.nextObject() as? String {
            let path = data.root + "/" + entry
            guard let mode = Self.mode(path) else { continue }
            #expect(mode & 0o007 == 0, "\(path) is open to others: \(String(mode, radix: 8))")
        }
        // The admin socket refuses nobody who can reach it, so reaching it is the control:
        // a connection as this user works (the CLI's own check).
        #expect(try host.cli(["status"]).status == 0)
    }

    // MARK: One customer and another's scripts

    @Test func aCustomerCannotReachAnothersScripts() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1)])
        defer { host.stop() }
        try host.start()
        let alice = try host.addCustomer("alice", cohort: "free")
        let bob = try host.addCustomer("bob", cohort: "free")
        let v1 = "function handle(req) log('alice private log line') return 'alice v1' end"
        let v2 = "function handle(req) log('alice private log line') return 'alice v2' end"
        #expect(try host.api("PUT", "/v1/scripts/secret", token: alice, body: Array(v1.utf8)).status == 201)
        #expect(try host.api("PUT", "/v1/scripts/secret", token: alice, body: Array(v2.utf8)).status == 201)
        let port = try host.pool("free").port
        let live = waitFor(timeout: 10, interval: 0.05) { httpGet(port: port, host: "secret.alice.localhost")?.body == "alice v2" }
        #expect(live != nil)
        _ = waitFor(timeout: 5, interval: 0.1) {
            (try? host.api("GET", "/v1/scripts/secret/logs", token: alice).body.contains("alice private log line")) == true
        }
        let before = try host.api("GET", "/v1/scripts/secret/versions", token: alice).body

        // Every customer route, with Bob's token on Alice's script name.
        let attempts: [(String, String, [UInt8])] = [
            ("GET", "/v1/scripts/secret", []),
            ("GET", "/v1/scripts/secret/versions", []),
            ("GET", "/v1/scripts/secret/logs", []),
            ("POST", "/v1/scripts/secret/rollback", []),
            ("POST", "/v1/scripts/secret/rollback", Array(#"{"version": 1}"#.utf8)),
            ("DELETE", "/v1/scripts/secret", []),
            // Names that try to reach into another customer's namespace.
            ("GET", "/v1/scripts/alice%2Fsecret", []),
            ("GET", "/v1/scripts/..%2Falice%2Fsecret", []),
            ("DELETE", "/v1/scripts/alice%2Fsecret", []),
            ("PUT", "/v1/scripts/alice%2Fsecret", Array("function handle() return 'bob' end".utf8)),
            ("PUT", "/v1/scripts/..%2F..%2Falice%2Fsecret", Array("function handle() return 'bob' end".utf8)),
            ("GET", "/v1/scripts/secret?customer=alice", []),
        ]
        for (method, path, body) in attempts {
            let answer = try host.api(method, path, token: bob, body: body)
            print("bob \(method) \(path): \(answer.status) \(answer.body.prefix(120))")
            #expect([400, 403, 404].contains(answer.status), "bob \(method) \(path): \(answer.status) \(answer.body)")
            #expect(!answer.body.contains("alice v"), "bob \(method) \(path) saw alice's source")
            #expect(!answer.body.contains("alice private log line"), "bob \(method) \(path) saw alice's log")
        }
        // Bob's list is his own.
        let list = try host.api("GET", "/v1/scripts", token: bob)
        #expect(list.status == 200 && !list.body.contains("secret"), "\(list.body)")
        // The admin routes refuse a customer token.
        let admin: [(String, String, [UInt8])] = [
            ("GET", "/v1/admin/status", []), ("GET", "/v1/admin/customers", []),
            ("POST", "/v1/admin/scripts/alice/secret/unquarantine", []),
            ("POST", "/v1/admin/customers", Array(#"{"name": "mallory", "cohort": "free"}"#.utf8)),
            ("POST", "/v1/admin/rollouts", Array(#"{"kind": "rules", "content": "{\"rules\": [], \"rulesets\": {}}"}"#.utf8)),
        ]
        for (method, path, body) in admin {
            let answer = try host.api(method, path, token: bob, body: body)
            #expect(answer.status == 401, "bob \(method) \(path): \(answer.status) \(answer.body)")
        }
        // Bob may use the same name: that is his own script, and Alice's stays hers.
        let mine = try host.api("PUT", "/v1/scripts/secret", token: bob, body: Array("function handle() return 'bob secret' end".utf8))
        #expect(mine.status == 201)
        #expect(try host.api("GET", "/v1/scripts/secret", token: bob).body.contains("bob secret"))
        let bobLive = waitFor(timeout: 10, interval: 0.05) { httpGet(port: port, host: "secret.bob.localhost")?.body == "bob secret" }
        #expect(bobLive != nil)

        // Alice's script is exactly as it was.
        #expect(try host.api("GET", "/v1/scripts/secret/versions", token: alice).body == before)
        let detail = try host.api("GET", "/v1/scripts/secret", token: alice)
        #expect(detail.body.contains("alice v2") && detail.body.contains("\"active_version\":2"), "\(detail.body)")
        #expect(httpGet(port: port, host: "secret.alice.localhost")?.body == "alice v2")
        #expect(try host.api("GET", "/v1/scripts/secret/logs", token: bob).body.contains("alice") == false)
        #expect(try host.cli(["customer", "list"]).output.contains("mallory") == false)
    }

    // MARK: Escaping

    /// Control bytes a script or a client can produce: ESC sequences (clear the
    /// screen, colours), CR/LF (forge a log line) and NUL.
    static let hostileText = #"\27[2J\27[31mRED\27[0m\r\nFORGED-LINE level=error\0NUL"#

    @Test func scriptAndRequestDataReachTheLogsOnlyEscaped() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1)])
        try host.assign(customer: "acme", to: "free")
        try host.writeScript(customer: "acme", name: "shout", source: """
            function handle(req)
              log("\(Self.hostileText)", req.path, req.headers["x-note"] or "")
              if print then print("\(Self.hostileText)") end
              return { status = 200, headers = { ["content-type"] = "text/plain" }, body = "\(Self.hostileText)" }
            end
            """)
        try host.writeScript(customer: "acme", name: "boom", source: """
            function handle(req) error("\(Self.hostileText)") end
            """)
        // Compiles (so the upload check lets it through) but fails when a worker loads it.
        try host.writeScript(customer: "acme", name: "topboom", source: """
            error("\(Self.hostileText)")
            function handle(req) return "never" end
            """)
        defer { host.stop() }
        try host.start()
        let port = try host.pool("free").port
        let shout = httpGet(port: port, host: "shout.acme.localhost", path: "/%1B%5B31mPATH%0D%0AFORGED-PATH")
        #expect(shout?.status == 200, "\(String(describing: shout))")
        #expect(shout?.body.contains("\u{1B}[31mRED") == true, "the response body is the script's to choose")
        let boom = httpGet(port: port, host: "boom.acme.localhost")
        #expect(boom?.status == 500 && boom?.headers["x-bulkhead-error"] == "script-error")
        #expect(boom?.body.contains("\\u001b") == true || boom?.body.contains("\\u001B") == true,
                "the error JSON escapes the message: \(boom?.body ?? "")")
        let topboom = httpGet(port: port, host: "topboom.acme.localhost")
        #expect(topboom?.status == 404, "a script that fails to load is not served")
        // Raw control bytes in a request head are refused before any script runs.
        for raw in ["GET / HTTP/1.1\r\nHost: shout.acme.localhost\r\nX-Note: a\u{1B}[2Jb\r\n\r\n",
                    "GET /\u{1B}[2J HTTP/1.1\r\nHost: shout.acme.localhost\r\n\r\n",
                    "GET / HTTP/1.1\r\nHost: shout.acme.localhost\r\nX-Note: a\u{0}b\r\n\r\n"] {
            #expect(RawClient.exchange(port: port, raw).text.hasPrefix("HTTP/1.1 400 "))
        }
        // Bytes over 0x7F are allowed in a header value (obs-text); the script logs them.
        _ = httpRequest(port: port, host: "shout.acme.localhost", headers: ["X-Note": "caf\u{E9} \u{202E}reversed"])
        // The scripts' own logs hold the lines.
        let logged = waitFor(timeout: 5, interval: 0.1) {
            (try? host.cli(["script", "logs", "acme", "shout"]).output.contains("FORGED-LINE")) == true
                && (try? host.cli(["script", "logs", "acme", "topboom"]).output.contains("failed to load")) == true
        }
        #expect(logged != nil, "the lines reached the scripts' logs")
        usleep(300_000)

        var logs: [(String, [UInt8])] = [(host.root + "/supervisor.log", Self.bytes(of: host.root + "/supervisor.log"))]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: host.data.logs)) ?? [] {
            logs.append((host.data.logs + "/" + file, Self.bytes(of: host.data.logs + "/" + file)))
        }
        var sawTheLoadFailure = false
        for (path, bytes) in logs {
            let text = String(decoding: bytes, as: UTF8.self)
            print("\(path): \(bytes.count) bytes")
            #expect(!bytes.contains(0x1B), "\(path) holds a raw ESC")
            #expect(!bytes.contains(0x00), "\(path) holds a raw NUL")
            #expect(!bytes.contains(0x0D), "\(path) holds a raw CR")
            for line in text.split(separator: "\n") {
                #expect(!line.hasPrefix("FORGED"), "\(path): a forged line: \(line)")
            }
            if text.contains("FORGED-LINE") { sawTheLoadFailure = true }
        }
        // The load failure is logged by the supervisor (so the check above saw the text).
        #expect(sawTheLoadFailure, "the script's load error reached a host log, escaped")
        // And `bulkhead script logs` prints the lines for an operator's terminal escaped.
        let cli = try host.cli(["script", "logs", "acme", "shout"])
        #expect(!cli.output.utf8.contains(0x1B), "the CLI prints a raw ESC: \(cli.output.debugDescription)")
    }
}
