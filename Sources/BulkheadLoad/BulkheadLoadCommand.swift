import ArgumentParser
// FoundationEssentials has JSONEncoder without the full Foundation (and ICU).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import LoadClient
import Synchronization

/// Set by the SIGINT handler; the main thread turns it into a graceful stop.
/// An atomic store is async-signal-safe, unlike almost anything else.
private let interruptReceived = Atomic<Bool>(false)

/// `bulkhead-load`: steady keep-alive HTTP load on one or more targets, with every
/// outcome counted.
@main
struct BulkheadLoadCommand: ParsableCommand {
    /// The command's name and help.
    static let configuration = CommandConfiguration(
        commandName: "bulkhead-load",
        abstract: "Send keep-alive HTTP load to bulkhead pools and count every outcome.",
        discussion: """
            Each connection sends one request at a time and never retries: a failed \
            request is counted (connect, reset, eof, timeout, bad-response, mismatch) \
            and the connection is opened anew. Non-2xx responses are counted by status \
            and x-bulkhead-error kind. Ctrl-C stops early and still prints the report.

            Example:
              bulkhead-load --target free=:8101,expect-pool=free --rate 50 --duration 10
            """
    )

    /// The targets, as `LABEL=HOST:PORT[,key=value]…`.
    @Option(
        name: .customLong("target"),
        help: ArgumentHelp(
            "A target: LABEL=HOST:PORT[,host=H][,path=P][,method=M][,body=B][,header=NAME:VALUE][,expect-pool=X][,expect-body=S]. Repeatable.",
            valueName: "spec"
        )
    )
    var targets: [String] = []

    /// Connections per target.
    @Option(help: "Connections per target.")
    var connections: Int = 2

    /// Duration bound in seconds.
    @Option(help: "Stop after this many seconds (default 10 unless --requests is given).")
    var duration: Double?

    /// Request bound over all targets.
    @Option(help: "Stop after this many requests over all targets.")
    var requests: Int?

    /// Requests per second per connection.
    @Option(help: "Requests per second per connection (default: as fast as the server answers).")
    var rate: Double?

    /// Seconds allowed per response.
    @Option(help: "Seconds allowed for each response before it counts as a timeout.")
    var timeout: Double = 2

    /// Seconds allowed per connect.
    @Option(help: "Seconds allowed to open a connection.")
    var connectTimeout: Double = 1

    /// Print JSON instead of the summary.
    @Flag(help: "Print the report as JSON instead of the summary.")
    var json = false

    /// Exit non-zero if anything was not ok.
    @Flag(help: "Exit with status 1 if any request was not ok.")
    var failOnError = false

    /// Checks the options that ArgumentParser cannot, so mistakes get the usage line.
    func validate() throws {
        _ = try makeConfiguration()
    }

    /// Runs the load and prints the report.
    func run() throws {
        let run = try LoadRun.start(makeConfiguration())
        signal(SIGINT) { _ in
            interruptReceived.store(true, ordering: .relaxed)
            // A second Ctrl-C should end the process at once.
            signal(SIGINT, SIG_DFL)
        }
        while !run.isFinished {
            if interruptReceived.load(ordering: .relaxed) { run.requestStop() }
            usleep(20_000)
        }
        let report = run.wait()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.summary)
        }
        if failOnError && report.failed > 0 {
            throw ExitCode(1)
        }
    }

    /// The library configuration for these options.
    private func makeConfiguration() throws -> LoadConfiguration {
        do {
            let stop: StopCondition
            switch (duration, requests) {
            case (let seconds?, let count?): stop = .first(duration: try Self.duration(seconds, "--duration"), requests: count)
            case (let seconds?, nil): stop = .duration(try Self.duration(seconds, "--duration"))
            case (nil, let count?): stop = .requests(count)
            case (nil, nil): stop = .duration(.seconds(10))
            }
            if let requests, requests < 0 { throw ValidationError("--requests must not be negative") }
            let configuration = LoadConfiguration(
                targets: try targets.map { spec throws(LoadConfigurationError) in try LoadTarget(spec: spec) },
                connectionsPerTarget: connections,
                stop: stop,
                ratePerConnection: rate,
                connectTimeout: try Self.duration(connectTimeout, "--connect-timeout"),
                readTimeout: try Self.duration(timeout, "--timeout")
            )
            try configuration.validate()
            return configuration
        } catch let error as LoadConfigurationError {
            throw ValidationError(error.description)
        }
    }

    /// Seconds from the command line as a `Duration`.
    private static func duration(_ seconds: Double, _ option: String) throws -> Duration {
        guard seconds.isFinite, seconds >= 0, seconds < 1e9 else {
            throw ValidationError("\(option) must be a number of seconds, got \(seconds)")
        }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }
}
