import ArgumentParser
import BulkheadCore
import Foundation
import Store
import Supervisor

/// `bulkhead break-glass`: the instant path, audited. Works with the supervisor up
/// (over the admin socket, applied at once) and down (on the store directly;
/// `bulkhead serve` applies it on start). Needs neither the HTTP API nor a token.
struct BreakGlassCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "break-glass",
        abstract: "Freeze rollouts or pin every pool to an artifact version, with or without a running supervisor.",
        subcommands: [Freeze.self, Unfreeze.self, Rollback.self, Status.self]
    )

    /// Runs `command` on the supervisor when it answers, else on the store.
    static func perform(
        _ command: String, arguments: [String: String] = [:], data: String,
        offline: (SQLiteStore, String) throws -> Void
    ) throws -> BreakGlass.Status {
        let actor = BreakGlass.actor()
        let directory = DataDirectory(data)
        var withActor = arguments
        withActor["actor"] = actor
        if let response = try? AdminClient.call(AdminRequest(command: command, arguments: withActor), data: directory, timeout: 10) {
            guard response.ok else {
                FileHandle.standardError.write(Data("bulkhead: \(response.error ?? "failed")\n".utf8))
                throw ExitCode.failure
            }
            return try JSONDecoder().decode(BreakGlass.Status.self, from: Data((response.result ?? "{}").utf8))
        }
        // No supervisor: straight to the store.
        let store: SQLiteStore
        do {
            store = try SQLiteStore(dataDirectory: directory)
        } catch {
            FileHandle.standardError.write(Data("bulkhead: no supervisor answers and the store cannot be opened: \(error)\n".utf8))
            throw ExitCode.failure
        }
        do {
            try offline(store, actor)
            let status = try BreakGlass.status(store: store)
            FileHandle.standardError.write(Data("bulkhead: no supervisor running; written to the store (bulkhead serve applies it on start)\n".utf8))
            return status
        } catch {
            FileHandle.standardError.write(Data("bulkhead: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    static func show(_ status: BreakGlass.Status, json: Bool) {
        if json {
            print((try? JSONOutput.line(status)) ?? "{}")
            return
        }
        print("frozen: \(status.frozen ? "yes" : "no")")
        print("pinned: \(status.pinned.isEmpty ? "none" : status.pinned.sorted { $0.key < $1.key }.map { "\($0.key) v\($0.value)" }.joined(separator: ", "))")
        print("rollouts running: \(status.running.isEmpty ? "none" : status.running.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }

    struct Freeze: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop every rollout from advancing (automatic rollbacks still happen).")
        @OptionGroup var dataOptions: DataOptions
        func run() throws {
            show(try perform("break-glass-freeze", data: dataOptions.data) { store, actor in
                try BreakGlass.setFrozen(true, store: store, actor: actor)
            }, json: false)
        }
    }

    struct Unfreeze: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let rollouts advance again.")
        @OptionGroup var dataOptions: DataOptions
        func run() throws {
            show(try perform("break-glass-unfreeze", data: dataOptions.data) { store, actor in
                try BreakGlass.setFrozen(false, store: store, actor: actor)
            }, json: false)
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pin every pool to a version of an artifact (default: the one before the current) and abort its rollout.")
        @Option(help: "runtime, rules or binary.") var kind: String
        @Option(help: "The version to pin.") var to: Int?
        @OptionGroup var dataOptions: DataOptions
        func run() throws {
            guard let artifact = ArtifactKind(rawValue: kind) else { throw ValidationError("--kind is one of runtime, rules, binary") }
            var arguments = ["kind": kind]
            if let to { arguments["version"] = String(to) }
            show(try perform("break-glass-rollback", arguments: arguments, data: dataOptions.data) { store, actor in
                let pools = (try store.knownGoodCohorts()).map(\.configuration.name)
                try BreakGlass.rollback(kind: artifact, to: to, store: store, pools: pools, actor: actor)
            }, json: false)
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the freeze, the pins and the rollouts running.")
        @OptionGroup var dataOptions: DataOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            show(try perform("break-glass-status", data: dataOptions.data) { _, _ in }, json: json)
        }
    }
}

/// `bulkhead events`: the audit log and rollout decisions as a timeline, read from
/// the store (it works whether or not the supervisor runs).
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print the audit log and rollout decisions; --follow keeps printing new ones.")
    @OptionGroup var dataOptions: DataOptions
    @Flag(help: "Keep printing new events.") var follow = false
    @Flag(help: "One JSON object per line.") var json = false
    @Option(help: "How many past events to print first.") var last: Int = 50

    func run() throws {
        let store: SQLiteStore
        do {
            store = try SQLiteStore(dataDirectory: DataDirectory(dataOptions.data))
        } catch {
            FileHandle.standardError.write(Data("bulkhead: cannot open the store: \(error)\n".utf8))
            throw ExitCode.failure
        }
        var after = max(0, try store.latestAuditEventID() - last)
        let formatter = ISO8601DateFormatter()
        while true {
            let events = try store.auditEvents(after: after, limit: 500)
            for event in events {
                after = max(after, event.id)
                if json {
                    print(try JSONOutput.line(event))
                } else {
                    let time = String(formatter.string(from: event.at).dropFirst(5).prefix(14)).replacingOccurrences(of: "T", with: " ")
                    let line = "\(time)  \(event.actor.padding(toLength: 18, withPad: " ", startingAt: 0)) "
                        + "\(event.action.rawValue.padding(toLength: 19, withPad: " ", startingAt: 0)) \(event.subject)"
                    print(line.count > 80 ? String(line.prefix(79)) + "…" : line)
                }
            }
            fflush(nil)
            if !follow { return }
            if events.isEmpty { usleep(250_000) }
        }
    }
}
