#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation

/// Checks platform artifacts that need a process: a runtime's Lua syntax (compiled,
/// never run, by `bulkhead check-artifact` — the supervisor does not link Lua), and a
/// worker binary, which must start and answer a health probe.
struct ArtifactChecker: ArtifactProcessChecks {
    let executable: String

    /// Largest runtime accepted.
    static let maxRuntimeBytes = 256 * 1024

    func checkRuntime(_ source: String) async -> ControlError? {
        guard source.utf8.count <= Self.maxRuntimeBytes else {
            return ControlError(.tooLarge, "the runtime is \(source.utf8.count) bytes, over the \(Self.maxRuntimeBytes)-byte limit")
        }
        let result = await ChildProcess.run(executable, ["check-artifact", "--kind", "runtime"], input: source, timeout: 10)
        guard let output = result else {
            return ControlError(.invalidRuntime, "the runtime check did not finish")
        }
        if output.status == 0 { return nil }
        return ControlError(.invalidRuntime, output.text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Starts `path probe`: it must answer with this build's control protocol version.
    func probeBinary(_ path: String) async -> ControlError? {
        guard path.hasPrefix("/") else {
            return ControlError(.invalidBinary, "give the binary's absolute path, got '\(path)'")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
              FileManager.default.isExecutableFile(atPath: path)
        else {
            return ControlError(.invalidBinary, "\(path) is not an executable file")
        }
        // What the kernel can run: an ELF file or a script with a #! line. Anything
        // else fails to start with a message that does not make this clear.
        let start = FileHandle(forReadingAtPath: path).flatMap { try? $0.read(upToCount: 4) } ?? Data()
        guard start.starts(with: [0x7f, 0x45, 0x4c, 0x46]) || start.starts(with: [0x23, 0x21]) else {
            return ControlError(.invalidBinary, "\(path) is neither an ELF executable nor a script starting with #!")
        }
        guard let output = await ChildProcess.run(path, ["probe"], input: "", timeout: 10) else {
            return ControlError(.invalidBinary, "\(path) probe did not answer within 10 s")
        }
        let expected = "{\"protocol\":\(controlProtocolVersion)}"
        guard output.status == 0, output.text.contains(expected) else {
            return ControlError(.invalidBinary, "\(path) probe answered \(output.status): \(output.text.prefix(200)); expected \(expected)")
        }
        return nil
    }
}
