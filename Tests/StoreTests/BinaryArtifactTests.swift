import Foundation
import Store
import Testing

@Suite("A worker binary by path and sha256")
struct BinaryArtifactTests {
    func temporaryFile(_ bytes: [UInt8], executable: Bool = true) throws -> String {
        let path = FileManager.default.temporaryDirectory.path + "/bulkhead-binary-\(UUID().uuidString)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: path)
        return path
    }

    @Test("content round-trips as JSON; a bare path has no hash to check")
    func content() throws {
        let binary = BinaryArtifact(path: "/opt/bulkhead/bin/bulkhead", sha256: String(repeating: "a", count: 64))
        #expect(BinaryArtifact(content: binary.content) == binary)
        #expect(binary.content.hasPrefix(#"{"path":"/opt/bulkhead/bin/bulkhead","#))
        #expect(BinaryArtifact(content: "/usr/bin/bulkhead") == BinaryArtifact(path: "/usr/bin/bulkhead", sha256: nil))
    }

    @Test("the installed file passes; another build, a missing or non-executable file does not, saying why")
    func problems() throws {
        let path = try temporaryFile(Array("#!/bin/sh\necho one\n".utf8))
        defer { unlink(path) }
        let installed = try BinaryArtifact.installed(at: path)
        #expect(installed.sha256?.count == 64)
        #expect(installed.problem() == nil)

        try Data("#!/bin/sh\necho two\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(installed.problem()?.hasPrefix("binary missing: \(path) is another build") == true)
        #expect(BinaryArtifact(path: path, sha256: nil).problem() == nil, "no hash: any executable file at the path")

        let missing = BinaryArtifact(path: path + "-gone", sha256: installed.sha256)
        #expect(missing.problem() == "binary missing: no file at \(path)-gone")
        let plain = try temporaryFile([0x7f], executable: false)
        defer { unlink(plain) }
        #expect(BinaryArtifact(path: plain, sha256: nil).problem() == "binary missing: \(plain) is not executable")
    }
}
