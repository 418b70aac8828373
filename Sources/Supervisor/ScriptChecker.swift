#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation

/// Checks an uploaded script in a separate, short-lived process
/// (`bulkhead check-script`) under the cohort's limits: it must compile in text mode,
/// its top-level chunk must finish within the limits, and it must define `handle`.
/// The supervisor never runs customer code itself.
struct ScriptChecker: Sendable {
    let executable: String

    private struct Verdict: Decodable {
        var ok: Bool
        var kind: String?
        var message: String?
    }

    /// Blocks until the check is done (at most the wall limit plus a margin).
    func check(name: String, source: String, limits: CohortConfiguration.Limits) -> ControlError? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "check-script", "--name", name, "--instructions", String(limits.instructions),
            "--memory-mb", String(limits.memoryMB), "--wall-ms", String(limits.wallMilliseconds),
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return ControlError(status: 500, kind: "check-failed", message: "cannot start the script check: \(error)")
        }
        let writer = DispatchQueue.global()
        writer.async {
            try? input.fileHandleForWriting.write(contentsOf: Data(source.utf8))
            try? input.fileHandleForWriting.close()
        }
        let deadline = Date().addingTimeInterval(Double(limits.wallMilliseconds) / 1000 + 3)
        while process.isRunning && Date() < deadline { usleep(2_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return ControlError(status: 400, kind: "limit-wall",
                                message: "\(name).lua: loading the script ran past the \(limits.wallMilliseconds) ms deadline")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        guard let verdict = try? JSONDecoder().decode(Verdict.self, from: data) else {
            return ControlError(status: 400, kind: "check-failed",
                                message: "\(name).lua: the script check ended without a verdict (status \(process.terminationStatus)); the script may crash the sandbox")
        }
        if verdict.ok { return nil }
        let kind = verdict.kind ?? "script-error"
        var message = verdict.message ?? "the script was refused"
        switch kind {
        case "limit-cpu": message += " (the top-level chunk spent the \(limits.instructions)-instruction budget)"
        case "limit-memory": message += " (the top-level chunk passed the \(limits.memoryMB) MiB memory cap)"
        default: break
        }
        return ControlError(status: 400, kind: kind == "script-error" && message.contains("handle") ? "no-handle" : kind,
                            message: message)
    }
}
