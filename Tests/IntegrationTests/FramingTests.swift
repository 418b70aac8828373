#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store
import Testing

/// What a script's response can do to HTTP framing, on a real host: a 1xx, a body on
/// 204 or 304, bulkhead's own headers; and a source with a NUL byte, stored and
/// served whole. Issue 15, findings 6 and 7.
@Suite(.serialized) struct FramingTests {
    /// A whole response head a script put in a body, to pose as the next response.
    static let framingScript = #"""
        local forged = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-bulkhead-pool: forged\r\ncontent-length: 6\r\n\r\nforged"
        function handle(req)
          if req.path == "/100" then return { status = 100, body = forged } end
          if req.path == "/103" then return { status = 103, headers = { link = "</a.css>" } } end
          if req.path == "/204" then return { status = 204, headers = { ["x-kind"] = "none" }, body = "LEAKED-204" } end
          if req.path == "/304" then return { status = 304, headers = { etag = '"v1"' }, body = "LEAKED-304" } end
          if req.path == "/error" then return { status = 404, headers = { ["X-Bulkhead-Error"] = "no-script" }, body = "{}" } end
          if req.path == "/pool" then return { headers = { ["x-bulkhead-pool"] = "enterprise" }, body = "x" } end
          if req.path == "/id" then return { headers = { ["X-Request-ID"] = "chosen-by-the-script" }, body = "x" } end
          return "after"
        end
        """#

    /// One free worker, customer `acme` (added with the CLI, so the test has its token)
    /// with `framing` uploaded through the API, and the ingress routing to it.
    static func startHost() throws -> (host: HostHarness, token: String, pool: Int, ingress: Int) {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 1, canaryWorkers: 0)])
        do {
            try host.start()
            let token = try host.addCustomer("acme", cohort: "free")
            let upload = try host.api("PUT", "/v1/scripts/framing", token: token, body: Array(framingScript.utf8))
            guard upload.status == 201 else { throw HarnessError("upload: \(upload.status) \(upload.body)") }
            let pool = try host.pool("free").port
            guard let address = try host.status().ingress, let ingress = Int(address.split(separator: ":").last ?? "") else {
                throw HarnessError("no ingress in status")
            }
            let live = waitFor(timeout: 10, interval: 0.02) {
                httpGet(port: pool, host: "framing.acme.localhost")?.body == "after"
                    && httpGet(port: ingress, host: "framing.acme.localhost")?.body == "after"
            }
            guard live != nil else { throw HarnessError("framing never went live on the pool and the ingress") }
            return (host, token, pool, ingress)
        } catch {
            host.stop()
            throw error
        }
    }

    /// The responses in `text`, split at each status line.
    static func responses(_ text: String) -> [String] {
        text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { "HTTP/1.1 " + $0 }
    }

    @Test func noContentStatusesGoOutWithoutBodyOrLength() throws {
        let (host, _, pool, ingress) = try Self.startHost()
        defer { host.stop() }
        // Three pipelined requests: a body after the 204 or 304 would be read as the
        // next response, or glued to its head.
        let hostHeader = "Host: framing.acme.localhost\r\n"
        let pipelined = "GET /204 HTTP/1.1\r\n\(hostHeader)\r\nGET /304 HTTP/1.1\r\n\(hostHeader)\r\nGET /after HTTP/1.1\r\n\(hostHeader)Connection: close\r\n\r\n"
        for (label, port) in [("pool", pool), ("ingress", ingress)] {
            let answer = RawClient.exchange(port: port, pipelined, timeout: 10)
            print("\(label): \(answer.text.debugDescription)")
            #expect(answer.closed, "\(label)")
            #expect(!answer.text.contains("LEAKED"), "\(label): a script's body went out after a 204 or 304")
            let parts = Self.responses(answer.text)
            #expect(parts.count == 3, "\(label): \(parts)")
            guard parts.count == 3 else { continue }
            #expect(parts[0].hasPrefix("HTTP/1.1 204 No Content\r\n"), "\(label)")
            #expect(parts[0].contains("x-kind: none\r\n"), "\(label)")
            #expect(parts[0].hasSuffix("\r\n\r\n"), "\(label): nothing after the 204's head")
            #expect(parts[1].hasPrefix("HTTP/1.1 304 Not Modified\r\n"), "\(label)")
            #expect(parts[1].contains("etag: \"v1\"\r\n"), "\(label)")
            #expect(parts[1].hasSuffix("\r\n\r\n"), "\(label): nothing after the 304's head")
            for part in parts.prefix(2) {
                #expect(!part.lowercased().contains("content-length"), "\(label): \(part.debugDescription)")
            }
            #expect(parts[2].hasPrefix("HTTP/1.1 200 OK\r\n"), "\(label)")
            #expect(parts[2].contains("content-length: 5\r\n") && parts[2].hasSuffix("\r\n\r\nafter"), "\(label)")
        }
    }

    @Test func interimStatusAndReservedHeadersAreScriptErrors() throws {
        let (host, token, pool, ingress) = try Self.startHost()
        defer { host.stop() }
        let expectations = [
            ("/100", "status 100 is an interim (1xx) response"),
            ("/103", "status 103 is an interim (1xx) response"),
            ("/error", "header 'X-Bulkhead-Error' is reserved"),
            ("/pool", "header 'x-bulkhead-pool' is reserved"),
            ("/id", "header 'X-Request-ID' is reserved"),
        ]
        for (label, port) in [("pool", pool), ("ingress", ingress)] {
            for (path, _) in expectations {
                let answer = RawClient.exchange(
                    port: port, "GET \(path) HTTP/1.1\r\nHost: framing.acme.localhost\r\nConnection: close\r\n\r\n", timeout: 10)
                print("\(label) \(path): \(answer.text.debugDescription)")
                let parts = Self.responses(answer.text)
                #expect(parts.count == 1, "\(label) \(path): one response, not \(parts.count)")
                #expect(answer.text.hasPrefix("HTTP/1.1 500 Internal Server Error\r\n"), "\(label) \(path)")
                #expect(answer.text.contains("x-bulkhead-error: script-error\r\n"), "\(label) \(path)")
                #expect(answer.text.contains("x-bulkhead-pool: free\r\n"), "\(label) \(path)")
                #expect(!answer.text.contains("forged") && !answer.text.contains("enterprise")
                            && !answer.text.contains("chosen-by-the-script") && !answer.text.contains("no-script"),
                        "\(label) \(path): the script's own framing or headers went out")
            }
        }
        // The customer's log says why.
        let found = waitFor(timeout: 10, interval: 0.1) {
            guard let logs = try? host.api("GET", "/v1/scripts/framing/logs", token: token), logs.status == 200 else { return false }
            return expectations.allSatisfy { logs.body.contains($0.1) }
        }
        let logs = try host.api("GET", "/v1/scripts/framing/logs", token: token)
        #expect(found != nil, "\(logs.body)")
    }

    @Test func tryFramesLikeAWorker() throws {
        let runner = TryCommandTests()
        let noContent = try runner.run(Self.framingScript, ["--path", "/204"])
        #expect(noContent.status == 0, "\(noContent.stderr)")
        #expect(noContent.stdout == "HTTP/1.1 204 No Content\r\nx-kind: none\r\n\r\n", "\(noContent.stdout.debugDescription)")
        let notModified = try runner.run(Self.framingScript, ["--path", "/304"])
        #expect(notModified.stdout == "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n", "\(notModified.stdout.debugDescription)")
        for (path, message) in [("/100", "status 100 is an interim (1xx) response"), ("/error", "header 'X-Bulkhead-Error' is reserved"),
                                ("/id", "header 'X-Request-ID' is reserved")] {
            let outcome = try runner.run(Self.framingScript, ["--path", path])
            #expect(outcome.status == 1, "\(path): \(outcome.stdout.debugDescription)")
            #expect(outcome.stdout.isEmpty, "\(path)")
            #expect(outcome.stderr.hasPrefix("script-error: script.lua: bad response from handle: \(message)"), "\(path): \(outcome.stderr)")
        }
    }

    /// A script whose source holds NUL bytes: one in a string literal (its answer is
    /// `a`, NUL, `b`) and one in a comment at the end.
    static func nulSource(_ tag: String) -> [UInt8] {
        Array("-- \(tag)\nfunction handle(req) return 'a".utf8) + [0] + Array("b' end\n-- ".utf8) + [0] + Array("\n".utf8)
    }

    @Test func sourcesWithNulBytesAreStoredAndServedWhole() throws {
        let host = try HostHarness(pools: [HostHarness.Pool(name: "free", order: 1, workers: 2)])
        defer { host.stop() }
        try host.start()
        let token = try host.addCustomer("acme", cohort: "free")
        let port = try host.pool("free").port

        /// The stored source and sha256 of a script, as the API answers.
        func stored(_ name: String) throws -> (source: [UInt8], sha256: String)? {
            let answer = try host.api("GET", "/v1/scripts/\(name)", token: token)
            guard answer.status == 200,
                  let json = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
                  let script = json["script"] as? [String: Any], let sha256 = script["sha256"] as? String,
                  let source = json["source"] as? String
            else { return nil }
            return (Array(source.utf8), sha256)
        }
        /// Whether every worker of the pool answers `a`, NUL, `b` (each answer names
        /// its worker; fresh connections spread over them).
        func servedWhole(_ name: String) throws -> Bool {
            let workers = Set(try host.pool("free").workers.map { String($0.pid) })
            var seen: Set<String> = []
            let done = waitFor(timeout: 10, interval: 0.01) {
                guard let answer = httpGet(port: port, host: "\(name).acme.localhost"),
                      let worker = answer.headers["x-bulkhead-worker"]
                else { return false }
                if answer.status == 200 && Array(answer.body.utf8) == [0x61, 0, 0x62] { seen.insert(worker) }
                return seen.isSuperset(of: workers)
            }
            if done == nil {
                print("\(name): last answer \(String(describing: httpGet(port: port, host: "\(name).acme.localhost")))")
            }
            return done != nil
        }

        // The API.
        let apiSource = Self.nulSource("api")
        let upload = try host.api("PUT", "/v1/scripts/nulapi", token: token, body: apiSource)
        print("PUT: \(upload.status) \(upload.body)")
        #expect(upload.status == 201)
        let answered = try #require(
            (try JSONSerialization.jsonObject(with: Data(upload.body.utf8)) as? [String: Any])?["sha256"] as? String)
        #expect(answered == SHA256Hasher.hex(apiSource))
        let viaAPI = try #require(try stored("nulapi"))
        #expect(viaAPI.source == apiSource, "stored \(viaAPI.source.count) of \(apiSource.count) bytes")
        #expect(viaAPI.sha256 == SHA256Hasher.hex(viaAPI.source))
        #expect(try servedWhole("nulapi"))

        // `bulkhead script put`.
        let cliSource = Self.nulSource("cli")
        let file = host.root + "/nulcli.lua"
        try Data(cliSource).write(to: URL(fileURLWithPath: file))
        let put = try host.cli(["script", "put", "acme", "nulcli", file])
        #expect(put.status == 0, "\(put.output)")
        #expect(put.output.contains("sha256 \(SHA256Hasher.hex(cliSource))"), "\(put.output)")
        let viaCLI = try #require(try stored("nulcli"))
        #expect(viaCLI.source == cliSource, "stored \(viaCLI.source.count) of \(cliSource.count) bytes")
        #expect(try servedWhole("nulcli"))
        // A file that is not UTF-8 is refused, not stored with its bytes replaced.
        let latin1 = host.root + "/latin1.lua"
        try Data(Array("function handle(req) return 'caf".utf8) + [0xE9] + Array("' end\n".utf8)).write(to: URL(fileURLWithPath: latin1))
        let refused = try host.cli(["script", "put", "acme", "latin1", latin1])
        #expect(refused.status != 0, "\(refused.output)")
        #expect(refused.output.contains("is not UTF-8 text"), "\(refused.output)")
        #expect(try host.api("GET", "/v1/scripts/latin1", token: token).status == 404)

        // The scripts directory.
        let directorySource = Self.nulSource("directory")
        try FileManager.default.createDirectory(atPath: host.scripts + "/acme", withIntermediateDirectories: true)
        try Data(directorySource).write(to: URL(fileURLWithPath: host.scripts + "/acme/nuldir.lua"))
        #expect(try servedWhole("nuldir"))
        let viaDirectory = try #require(try stored("nuldir"))
        #expect(viaDirectory.source == directorySource, "stored \(viaDirectory.source.count) of \(directorySource.count) bytes")
        #expect(viaDirectory.sha256 == SHA256Hasher.hex(directorySource))
    }
}
