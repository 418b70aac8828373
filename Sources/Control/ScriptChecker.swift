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

    /// Why the script is refused, or nil. Suspends (holding no thread) until the check
    /// is done: at most the wall limit plus a margin.
    func check(name: String, source: String, limits: CohortConfiguration.Limits) async -> ControlError? {
        let arguments = [
            "check-script", "--name", name, "--instructions", String(limits.instructions),
            "--memory-mb", String(limits.memoryMB), "--wall-ms", String(limits.wallMilliseconds),
        ]
        let timeout = Double(limits.wallMilliseconds) / 1000 + 3
        guard let output = await ChildProcess.run(executable, arguments, input: source, timeout: timeout, mergeStderr: false) else {
            return ControlError(.limitWall, "\(name).lua: loading the script ran past the \(limits.wallMilliseconds) ms deadline")
        }
        let data = Data(output.text.utf8)
        guard let verdict = try? JSONDecoder().decode(Verdict.self, from: data) else {
            return ControlError(.checkFailed, "\(name).lua: the script check ended without a verdict (status \(output.status)); the script may crash the sandbox")
        }
        if verdict.ok { return nil }
        let kind = verdict.kind ?? "script-error"
        var message = verdict.message ?? "the script was refused"
        switch kind {
        case "limit-cpu": message += " (the top-level chunk spent the \(limits.instructions)-instruction budget)"
        case "limit-memory": message += " (the top-level chunk passed the \(limits.memoryMB) MiB memory cap)"
        default: break
        }
        // The check's kinds are the sandbox's `ScriptError.Kind` raw values; one this
        // build does not know is still a refused script, never an accepted one.
        let refusal = kind == "script-error" && message.contains("handle") ? ControlError.Kind.noHandle
            : ControlError.Kind(rawValue: kind) ?? .scriptError
        return ControlError(refusal, message)
    }
}
