import Foundation
import Store
import Testing

@Suite struct ArtifactStoreTests {
    @Test func versionsCountPerKind() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        #expect(try store.latestArtifact(kind: .rules) == nil)
        #expect(try store.artifacts(kind: .rules).isEmpty)

        let rules1 = try store.putArtifact(kind: .rules, content: #"{"rules": []}"#, actor: "admin")
        let runtime1 = try store.putArtifact(kind: .runtime, content: "function on_request(req, rules) end", actor: "admin")
        let rules2 = try store.putArtifact(kind: .rules, content: #"{"rules": [{"id": "a"}]}"#, actor: "admin")
        let binary1 = try store.putArtifact(kind: .binary, content: "/opt/bulkhead/2/bulkhead", actor: "admin")

        #expect(rules1.version == 1)
        #expect(rules2.version == 2)
        #expect(runtime1.version == 1)
        #expect(binary1.version == 1)
        #expect(rules2.sha256 == SHA256Hasher.hex(#"{"rules": [{"id": "a"}]}"#))
        #expect(rules2.size == 24)
        #expect(try store.artifacts(kind: .rules) == [rules1, rules2])
        #expect(try store.artifacts(kind: .runtime) == [runtime1])
    }

    @Test func getAndLatestCarryTheContent() throws {
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        let first = try store.putArtifact(kind: .runtime, content: "-- runtime 1", actor: "admin")
        let second = try store.putArtifact(kind: .runtime, content: "-- runtime 2", actor: "rollout")

        let one = try #require(try store.artifact(kind: .runtime, version: 1))
        #expect(one.summary == first)
        #expect(one.content == "-- runtime 1")
        let latest = try #require(try store.latestArtifact(kind: .runtime))
        #expect(latest.summary == second)
        #expect(latest.content == "-- runtime 2")
        #expect(latest.kind == .runtime)
        #expect(latest.version == 2)
        #expect(latest.summary.createdBy == "rollout")
        #expect(try store.artifact(kind: .runtime, version: 3) == nil)
        #expect(try store.artifact(kind: .rules, version: 1) == nil)
    }

    @Test func contentWithNulBytesIsStoredWhole() throws {
        // A runtime may hold a NUL inside a string literal; the store once cut
        // content at it (GRDB binds a String as a C string) while hash and size
        // covered all of it.
        let directory = try TemporaryDirectory()
        let store = try makeStore(in: directory)
        let content = "function on_request(req, rules) local s = 'a\u{0}b' end\n\u{0}"
        let put = try store.putArtifact(kind: .runtime, content: content, actor: "admin")
        #expect(put.size == content.utf8.count)
        let read = try #require(try store.artifact(kind: .runtime, version: put.version))
        #expect(Array(read.content.utf8) == Array(content.utf8), "\(read.content.utf8.count) of \(content.utf8.count) bytes read back")
        #expect(SHA256Hasher.hex(read.content) == put.sha256)
        let latest = try #require(try store.latestArtifact(kind: .runtime))
        #expect(Array(latest.content.utf8) == Array(content.utf8))
    }
}
