import ArgumentParser
import ControlAPI

/// The control API's address and connection limits: `bulkhead control` uses them,
/// `bulkhead serve` passes them on to the control process it starts.
struct APIOptions: ParsableArguments {
    @Option(help: "Address of the control API; port 0 picks a free one.")
    var api: String = "127.0.0.1:8080"
    @Option(help: ArgumentHelp(
        "Most connections the control API holds at once; a new one beyond it displaces the longest idle one.",
        discussion: "Default: the smallest of 1024 and a quarter of the descriptor limit (control raises its soft ulimit -n to the hard one)."))
    var apiMaxConnections: Int?
    @Option(help: "Most control API connections one client address may hold (default: half the cap, at most 256).")
    var apiMaxConnectionsPerPeer: Int?
    @Option(help: ArgumentHelp(
        "Seconds a control API connection may go without a request in progress before it is closed.",
        discussion: "Counted from its accept to its first complete request head, and between requests."))
    var apiHeadTimeout: Double = APIConnectionLimits.defaultHeadTimeout

    func validate() throws {
        if let apiMaxConnections, apiMaxConnections < 1 { throw ValidationError("--api-max-connections must be at least 1") }
        if let apiMaxConnectionsPerPeer, apiMaxConnectionsPerPeer < 1 {
            throw ValidationError("--api-max-connections-per-peer must be at least 1")
        }
        guard apiHeadTimeout > 0, apiHeadTimeout.isFinite else {
            throw ValidationError("--api-head-timeout must be a positive number of seconds")
        }
    }

    /// The same options as command-line arguments, for the control process.
    var arguments: [String] {
        var arguments = ["--api", api, "--api-head-timeout", String(apiHeadTimeout)]
        if let apiMaxConnections { arguments += ["--api-max-connections", String(apiMaxConnections)] }
        if let apiMaxConnectionsPerPeer { arguments += ["--api-max-connections-per-peer", String(apiMaxConnectionsPerPeer)] }
        return arguments
    }
}

/// What the control plane is given, by `bulkhead control` and by `bulkhead serve`
/// (which passes them on to its control child): the cohorts, a scripts directory, --demo.
struct ControlPlaneOptions: ParsableArguments {
    @Option(help: "The directory of cohort files.")
    var cohorts: String = "cohorts"
    @Option(help: "A scripts directory: CUSTOMER/NAME.lua files and customers.toml (CUSTOMER = \"COHORT\"), polled for changes.")
    var scripts: String?
    @Flag(help: "Seed demo-free, demo-pro and demo-enterprise, each with a hello script.")
    var demo = false
}
