#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BulkheadCore
import ControlAPI
import Foundation
import Store
import Rollout
import Supervisor

/// `bulkhead rollout`: ship a platform artifact through the pools under the health gate.
struct RolloutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Roll a runtime, rules, worker binary or cohort policy out to the pools, free first, under the health gate.",
        subcommands: [Start.self, List.self, Status.self, Watch.self, Pause.self, Resume.self, Abort.self, Promote.self]
    )

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate an artifact and start its rollout; prints the id last.")
        @Option(help: "runtime, rules, binary or policy.") var kind: String
        @Argument(help: "The runtime .lua, the rules .json, the worker binary, or a cohort file (its policy).") var file: String
        @OptionGroup var dataOptions: ClientOptions

        func run() throws {
            guard let artifact = ArtifactKind(rawValue: kind) else { throw ValidationError("--kind is one of runtime, rules, binary, policy") }
            let content: String
            if kind == "binary" {
                // By path and hash: every host checks the file it has against it.
                let path = URL(fileURLWithPath: file).standardizedFileURL.path
                content = ((try? BinaryArtifact.installed(at: path)) ?? BinaryArtifact(path: path, sha256: nil)).content
            } else {
                guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
                content = String(decoding: data, as: UTF8.self)
            }
            let (created, _) = try APIClient(dataOptions).call(
                .POST, "/v1/admin/rollouts", body: StartRollout(kind: artifact, content: content), to: .control,
                as: RolloutCreated.self, timeout: 60)
            let id = created.id
            print("rollout \(id) of the \(kind) started; follow it with: bulkhead rollout watch \(id)")
            print(id)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List rollouts, newest first.")
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let (list, answer) = try APIClient(dataOptions).call(.GET, "/v1/admin/rollouts", to: .control, as: RolloutList.self)
            if json {
                print(answer.text)
                return
            }
            print(Table.render([["ID", "KIND", "VERSION", "FROM", "STATE"]]
                + list.rollouts.map { [String($0.id), $0.kind, String($0.version), String($0.from), $0.status] }))
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A rollout's stages, gate numbers and decision log.")
        @Argument(help: "The rollout id.") var id: Int
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let (status, answer) = try APIClient(dataOptions).call(.GET, "/v1/admin/rollouts/\(id)", to: .control, as: RolloutStatus.self)
            if json {
                print(answer.text)
                return
            }
            print(RolloutView.render(status, id: id, live: false))
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow a rollout live until it ends.")
        @Argument(help: "The rollout id.") var id: Int
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print one JSON object per line.") var json = false

        func run() throws {
            let terminal = isatty(STDOUT_FILENO) == 1
            var lastLines = 0
            while true {
                let (status, answer) = try APIClient(dataOptions).call(
                    .GET, "/v1/admin/rollouts/\(id)", to: .control, as: RolloutStatus.self)
                if json {
                    print(answer.text)
                } else {
                    let text = terminal ? Terminal.fit(RolloutView.render(status, id: id, live: true)) : RolloutView.render(status, id: id, live: true)
                    if terminal && lastLines > 0 { print("\u{1B}[\(lastLines)A\u{1B}[J", terminator: "") }
                    print(text)
                    lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
                }
                fflush(nil)
                if status.state.isFinished { return }
                usleep(terminal ? 250_000 : 1_000_000)
            }
        }
    }

    /// Runs pause, resume, abort or promote.
    static func operate(_ command: String, id: Int, options: ClientOptions) throws {
        let (status, _) = try APIClient(options).call(.POST, "/v1/admin/rollouts/\(id)/\(command)", to: .control, as: RolloutStatus.self)
        print("rollout \(id): \(status.state)")
    }

    struct Pause: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hold a rollout at its stage (a failing gate still rolls back).")
        @Argument(help: "The rollout id.") var id: Int
        @OptionGroup var dataOptions: ClientOptions
        func run() throws { try RolloutCommand.operate("pause", id: id, options: dataOptions) }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume a paused rollout (its stage bakes again).")
        @Argument(help: "The rollout id.") var id: Int
        @OptionGroup var dataOptions: ClientOptions
        func run() throws { try RolloutCommand.operate("resume", id: id, options: dataOptions) }
    }

    struct Abort: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Abort a rollout: every worker that got it goes back.")
        @Argument(help: "The rollout id.") var id: Int
        @OptionGroup var dataOptions: ClientOptions
        func run() throws { try RolloutCommand.operate("abort", id: id, options: dataOptions) }
    }

    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pass the current stage now, skipping the rest of its bake.")
        @Argument(help: "The rollout id.") var id: Int
        @OptionGroup var dataOptions: ClientOptions
        func run() throws { try RolloutCommand.operate("promote", id: id, options: dataOptions) }
    }
}

/// Renders a rollout for people: a bar per stage, the gate's numbers, the decisions.
enum RolloutView {
    static func render(_ status: RolloutStatus, id: Int, live: Bool) -> String {
        var lines = ["rollout \(id): \(status.kind) v\(status.previousVersion) → v\(status.targetVersion)  [\(status.state)]"
            + (status.frozen ? "  FROZEN" : "")]
        let now = Date().timeIntervalSince1970
        for stage in status.stages {
            let width = 20
            var filled = 0
            switch stage.progress {
            case .passed: filled = width
            case .baking:
                if let started = status.bakeStartedAt {
                    let bake = max(0.001, status.lastVerdict?.gate.bakeSeconds ?? 1)
                    filled = min(width - 1, Int((now - started) / bake * Double(width)))
                }
            default: filled = 0
            }
            let bar = String(repeating: "#", count: max(0, filled)) + String(repeating: ".", count: max(0, width - filled))
            lines.append(String(format: "  %-18@ [%@] %@", stage.name as NSString, bar as NSString, stage.progress.rawValue as NSString))
        }
        if let verdict = status.lastVerdict {
            lines.append("  gate: \(verdict.outcome.rawValue) — \(verdict.requests) requests, \(verdict.platformErrors.stageCount) platform errors"
                + ", baseline \(verdict.baselineRequests.map(String.init) ?? "none")"
                + (verdict.p99Milliseconds.map { String(format: ", p99 %.2f ms", $0) } ?? "")
                + ", crashes \(verdict.crashes)")
            for (signature, count) in verdict.newSignatures.sorted(by: { $0.key < $1.key }) {
                lines.append("  new signature (\(count)×): \(signature)")
            }
            for reason in verdict.reasons.prefix(3) { lines.append("  · \(reason)") }
        }
        let decisions = live ? Array(status.decisions.suffix(4)) : status.decisions
        if !decisions.isEmpty { lines.append("  decisions:") }
        for decision in decisions { lines.append("    \(decision)") }
        return lines.joined(separator: "\n")
    }
}

/// The terminal a live view redraws in.
enum Terminal {
    /// Columns of the terminal on stdout (80 when unknown).
    static var columns: Int {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }

    /// Breaks a long note into lines of at most `width` characters.
    static func wrap(_ text: String, width: Int) -> String {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            if !current.isEmpty && current.count + 1 + word.count > width {
                lines.append(current)
                current = "  " + word
            } else {
                current += current.isEmpty ? String(word) : " " + word
            }
        }
        lines.append(current)
        return lines.map { $0.count > width ? String($0.prefix(width)) : $0 }.joined(separator: "\n")
    }

    /// Cuts every line to the terminal's width, so a redraw that moves the cursor up
    /// by the number of lines printed lands exactly on the previous frame.
    static func fit(_ text: String) -> String {
        let width = max(20, columns - 1)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.count > width ? String(line.prefix(width - 1)) + "…" : String(line)
        }.joined(separator: "\n")
    }
}
