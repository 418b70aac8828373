#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BulkheadCore
import Foundation
import LuaSandbox

/// `bulkhead check-script`: compiles and loads one script under a cohort's limits
/// and reports whether it defines `handle`. The supervisor runs it as a separate,
/// short-lived process for every upload, so no customer code ever runs in the
/// supervisor itself.
struct CheckScriptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-script",
        abstract: "Check a script read from stdin (used by the supervisor for uploads).",
        shouldDisplay: false
    )

    @Option(help: "Script name, for messages.") var name: String
    @Option(help: "Instruction budget.") var instructions: Int
    @Option(help: "Memory cap, MiB.") var memoryMb: Int
    @Option(help: "Wall-clock deadline, ms.") var wallMs: Int

    /// The answer, one JSON line on stdout.
    struct Verdict: Codable {
        var ok: Bool
        var kind: String?
        var message: String?
    }

    func run() throws {
        let source = FileHandle.standardInput.readDataToEndOfFile()
        let watchdog = Watchdog(margin: .milliseconds(250)) { chunkName, _ in
            Self.answer(Verdict(ok: false, kind: "limit-wall",
                                message: "\(chunkName): the top-level chunk ran past the \(wallMs) ms deadline"))
            _exit(0)
        }
        do {
            _ = try LuaScript(
                chunkName: "\(name).lua", source: [UInt8](source),
                limits: SandboxLimits(instructions: instructions, memoryBytes: memoryMb * 1024 * 1024, wallMilliseconds: wallMs),
                watchdog: watchdog)
            Self.answer(Verdict(ok: true))
        } catch {
            Self.answer(Verdict(ok: false, kind: error.kind.rawValue, message: error.message))
        }
        // Skip closing the state: it could run code, and the process ends anyway.
        _exit(0)
    }

    static func answer(_ verdict: Verdict) {
        let data = (try? JSONEncoder().encode(verdict)) ?? Data("{\"ok\":false}".utf8)
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}
