import Testing
@testable import LoadClient

/// `--target` specs and configuration checks.
@Suite("LoadConfiguration and target specs")
struct LoadConfigurationTests {
    @Test("a full spec sets every field")
    func fullSpec() throws {
        let target = try LoadTarget(
            spec: "free=127.0.0.1:8101,host=hello.demo-free.localhost,path=/x?y=1,method=post,body=hi,header=Authorization: Bearer t,expect-pool=free,expect-body=hello"
        )
        #expect(target.label == "free")
        #expect(target.host == "127.0.0.1")
        #expect(target.port == 8101)
        #expect(target.hostHeader == "hello.demo-free.localhost")
        #expect(target.path == "/x?y=1")
        #expect(target.method == "POST")
        #expect(target.body == "hi")
        #expect(target.headers == ["Authorization": "Bearer t"])
        #expect(target.expectedPool == "free")
        #expect(target.expectedBodySubstring == "hello")
    }

    @Test("an empty host means 127.0.0.1; defaults fill the rest")
    func shortSpec() throws {
        let target = try LoadTarget(spec: "pro=:8102")
        #expect(target == LoadTarget(label: "pro", port: 8102))
        #expect(target.effectiveHostHeader == "127.0.0.1:8102")
    }

    @Test("malformed specs are refused", arguments: [
        "no-equals", "=127.0.0.1:1", "x=127.0.0.1", "x=127.0.0.1:http", "x=127.0.0.1:1,path", "x=127.0.0.1:1,colour=red",
        "x=127.0.0.1:1,header=NoColon",
    ])
    func badSpec(_ spec: String) {
        #expect(throws: LoadConfigurationError.self) { try LoadTarget(spec: spec) }
    }

    @Test("the request is built once, with Host and Content-Length")
    func request() throws {
        var target = LoadTarget(label: "free", port: 8101, hostHeader: "hello.demo-free.localhost", path: "/a", method: "POST", body: "abc")
        target.headers = ["X-Test": "1"]
        let prepared = try PreparedTarget(target)
        #expect(String(decoding: prepared.request, as: UTF8.self)
            == "POST /a HTTP/1.1\r\nHost: hello.demo-free.localhost\r\nUser-Agent: bulkhead-load\r\nX-Test: 1\r\nContent-Length: 3\r\n\r\nabc")
    }

    @Test("targets that cannot be sent are refused", arguments: [
        LoadTarget(label: "", port: 1),
        LoadTarget(label: "x", port: 0),
        LoadTarget(label: "x", port: 70000),
        LoadTarget(label: "x", host: "example.com", port: 80),
        LoadTarget(label: "x", port: 80, path: "no-slash"),
        LoadTarget(label: "x", port: 80, path: "/with space"),
        LoadTarget(label: "x", port: 80, method: "GE T"),
        LoadTarget(label: "x", port: 80, hostHeader: "evil\r\nX: y"),
        LoadTarget(label: "x", port: 80, headers: ["X-A": "a\r\nX-B: b"]),
        LoadTarget(label: "x", port: 80, headers: ["Content-Length": "5"]),
    ])
    func badTarget(_ target: LoadTarget) {
        #expect(throws: LoadConfigurationError.self) {
            try LoadConfiguration(targets: [target], stop: .requests(1)).validate()
        }
    }

    @Test("settings out of range are refused")
    func badSettings() {
        let target = LoadTarget(label: "x", port: 80)
        #expect(throws: LoadConfigurationError.duplicateLabel("x")) {
            try LoadConfiguration(targets: [target, target], stop: .requests(1)).validate()
        }
        for configuration in [
            LoadConfiguration(targets: [target], connectionsPerTarget: 0, stop: .requests(1)),
            LoadConfiguration(targets: [target], connectionsPerTarget: 5000, stop: .requests(1)),
            LoadConfiguration(targets: [target], stop: .requests(1), ratePerConnection: 0),
            LoadConfiguration(targets: [target], stop: .requests(1), ratePerConnection: .nan),
            LoadConfiguration(targets: [target], stop: .requests(1), readTimeout: .zero),
        ] {
            #expect(throws: LoadConfigurationError.self) { try configuration.validate() }
        }
        #expect(throws: Never.self) {
            try LoadConfiguration(targets: [LoadTarget(label: "x", host: "localhost", port: 80)], stop: .requests(1)).validate()
        }
    }

    @Test("a stop condition is always bounded")
    func stopCondition() {
        #expect(StopCondition.requests(-3).requests == 0)
        #expect(StopCondition.duration(.seconds(2)).duration == .seconds(2))
        let both = StopCondition.first(duration: .seconds(1), requests: 9)
        #expect(both.duration == .seconds(1) && both.requests == 9)
    }
}
