import ArgumentParser
import BulkheadCore
import Foundation
import LuaSandbox

/// `bulkhead check-artifact --kind runtime`: compiles a runtime read from stdin,
/// without running it (the supervisor validates runtime artifacts with it).
struct CheckArtifactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-artifact",
        abstract: "Check a platform artifact read from stdin (used by the supervisor).",
        shouldDisplay: false
    )

    @Option(help: "runtime or rules.") var kind: String

    func run() throws {
        let data = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
        switch kind {
        case "runtime":
            if let error = PlatformRuntime.checkSyntax(source: data) {
                print("\(error.kind.rawValue): \(error.message)")
                throw ExitCode.failure
            }
        case "rules":
            if case .failure(let error) = RulesValidator.validate(data) {
                print("\(error)")
                throw ExitCode.failure
            }
        default:
            throw ValidationError("--kind is runtime or rules")
        }
        print("ok")
    }
}

/// `bulkhead probe`: the health probe a binary rollout starts a new build with.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Print the control protocol version (binary rollout health probe).",
        shouldDisplay: false
    )

    func run() throws {
        print("{\"protocol\":\(controlProtocolVersion)}")
    }
}
