import Foundation
import Store
import Testing

@Suite struct ArtifactStoreTests {
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
