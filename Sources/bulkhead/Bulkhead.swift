import ArgumentParser
import BulkheadCore
import Foundation

/// The `bulkhead` command: the host, its workers, and the operator's tools.
@main
struct Bulkhead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulkhead",
        abstract: "Runs customers' Lua 5.4 scripts on HTTP requests, in worker pools that fail small.",
        discussion: """
            The host agent (`bulkhead serve`) runs one pool of worker processes per customer cohort \
            (cohorts/*.toml) and starts the control plane (`bulkhead control`: the API, the rollout \
            driver, the only writer of the store) as a supervised child. `bulkhead try` runs a script \
            once through exactly the sandbox and limits of a cohort's workers. The other commands speak \
            HTTP, as the API's JSON bodies, over two sockets only you (or root) may use: \
            DATA/run/control.sock to control for the control routes and DATA/run/admin.sock to the \
            host agent for the host routes (status, break glass, scale, logs). \
            Break glass is the host's own, kept in its replica DATA/host.sqlite: with no `serve` running it \
            works on that file, under serve's lock.
            """,
        subcommands: [
            ServeCommand.self, ControlCommand.self, TryCommand.self, StatusCommand.self, CustomerCommand.self, ScriptCommand.self,
            CohortCommand.self, DeployCommand.self, RolloutCommand.self, BreakGlassCommand.self, EventsCommand.self, HostCommand.self,
            WorkerCommand.self, IngressCommand.self, CheckScriptCommand.self, CheckArtifactCommand.self, ProbeCommand.self,
        ]
    )
}

/// Options every command that touches the data directory shares.
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: "The data directory: store, run/ sockets, logs.")
    var data: String = "./.bulkhead"

    /// Checks the data directory before the command reads or writes anything in it
    /// (ArgumentParser validates option groups before `run()`), and names it by its
    /// real path from then on: a symlinked ./.bulkhead is resolved once, here.
    /// `serve` checks again as it creates what is missing.
    mutating func validate() throws {
        data = try Self.verified(data)
    }

    /// `path` checked and resolved, or the command ends naming what is wrong.
    static func verified(_ path: String) throws -> String {
        do {
            return try DataDirectory(path).verified().root
        } catch {
            FileHandle.standardError.write(Data("bulkhead: \(ControlCharacters.escaped(error.description))\n".utf8))
            throw ExitCode.failure
        }
    }
}
