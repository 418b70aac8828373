import BulkheadCore
import LuaSandbox

/// One loaded script in a worker.
final class LoadedScript {
    let customer: String
    let name: String
    let version: Int
    let state: LuaScript
    var quarantined = false
    /// Requests this script answered on this worker, and its failures by kind
    /// (every version of the name: the candidate of a split counts here too).
    var requests = 0
    var errors: [String: Int] = [:]
    /// This version's own counts while its script is under a split (nil otherwise,
    /// so a script without a deployment pays nothing for them).
    var versionCounts: ScriptVersionCounts?
    /// On the active version of a script under a gradual deployment: the candidate
    /// and its share.
    var split: LoadedSplit?
    /// The error signatures this version showed on this worker (at most
    /// `maxKnownSignatures`): a deployment's candidate is not blamed for them.
    var knownSignatures: Set<String> = []
    static let maxKnownSignatures = 50

    /// "customer/name", the note a crash during this script's calls leaves for the
    /// supervisor (see `bh_crash_note_set`). C memory: the signal handler reads it.
    let crashNote: UnsafeMutableBufferPointer<CChar>

    init(customer: String, name: String, version: Int, state: LuaScript) {
        self.customer = customer
        self.name = name
        self.version = version
        self.state = state
        let note = Array("\(customer)/\(name)".utf8CString.dropLast())
        crashNote = .allocate(capacity: max(note.count, 1))
        _ = crashNote.initialize(from: note)
    }

    deinit {
        crashNote.deallocate()
    }
}

/// The candidate of a script under a gradual deployment, and which requests it gets.
final class LoadedSplit {
    /// The split as the supervisor sent it, without the source.
    let config: ScriptSplit
    /// The candidate version, loaded beside the active one.
    let candidate: LoadedScript
    /// The key header's name in lower case, nil for the client's address.
    let keyHeader: [UInt8]?

    init(config: ScriptSplit, candidate: LoadedScript) {
        self.config = config.withoutSource
        self.candidate = candidate
        self.keyHeader = config.keyHeader.map { Array($0.lowercased().utf8) }
    }
}

/// What a worker serves: customers, their scripts, the cohort. Lives on the
/// worker's event loop; never touched from another thread.
final class ScriptRegistry {
    /// The cohort this worker's pool serves.
    private(set) var cohort: CohortConfiguration?
    /// Customer → pool, for every customer of the host (to answer `wrong-pool`).
    private(set) var assignments: [String: String] = [:]
    /// Customer → script name → script.
    private var scripts: [String: [String: LoadedScript]] = [:]
    /// Scripts quarantined before they were loaded (`customer/name`).
    private var pendingQuarantine: Set<String> = []

    /// How a request resolves.
    enum Lookup {
        case script(LoadedScript)
        case noScript
        case wrongPool(String)
    }

    var count: Int { scripts.values.reduce(0) { $0 + $1.count } }

    /// Counters of every script that served a request, keyed `customer/name`. A new
    /// version starts from the old one's counts, so they never go backwards.
    func counters() -> [String: ScriptCounters] {
        var result: [String: ScriptCounters] = [:]
        for table in scripts.values {
            for script in table.values where script.requests > 0 {
                result["\(script.customer)/\(script.name)"] = ScriptCounters(requests: script.requests, errors: script.errors)
            }
        }
        return result
    }

    /// The counts of every script under a split, by version, for the heartbeat.
    func splitCounts() -> [SplitCounts] {
        var result: [SplitCounts] = []
        for table in scripts.values {
            for script in table.values {
                guard let split = script.split else { continue }
                result.append(SplitCounts(
                    customer: script.customer, name: script.name, deployment: split.config.deployment,
                    percent: split.config.percent(at: ScriptSplit.monotonicNanoseconds()), activeVersion: script.version, candidateVersion: split.candidate.version,
                    active: script.versionCounts ?? ScriptVersionCounts(),
                    candidate: split.candidate.versionCounts ?? ScriptVersionCounts(),
                    activeKnownSignatures: script.knownSignatures.sorted()))
            }
        }
        return result
    }

    func configure(_ cohort: CohortConfiguration) {
        let limitsChanged = self.cohort?.limits != cohort.limits
        self.cohort = cohort
        if limitsChanged {
            let limits = Self.sandboxLimits(cohort.limits)
            for table in scripts.values {
                for script in table.values {
                    script.state.limits = limits
                    script.split?.candidate.state.limits = limits
                }
            }
        }
    }

    func setAssignments(_ assignments: [String: String]) {
        lastLookup = nil
        self.assignments = assignments
    }

    /// Finds the script for `customer`/`name` in pool `pool`.
    func lookup(customer: String, name: String, pool: String) -> Lookup {
        // Requests on a connection mostly name one script: three hashed lookups
        // become three comparisons of (mostly inline) strings.
        if let last = lastLookup, last.customer == customer, last.name == name, last.pool == pool {
            return last.result
        }
        let result: Lookup
        if let assigned = assignments[customer], assigned != pool {
            result = .wrongPool(assigned)
        } else if let script = scripts[customer]?[name] {
            result = .script(script)
        } else {
            result = .noScript
        }
        lastLookup = (customer, name, pool, result)
        return result
    }

    /// The last answer of `lookup`, dropped whenever what it depends on changes.
    private var lastLookup: (customer: String, name: String, pool: String, result: Lookup)?

    func get(customer: String, name: String) -> LoadedScript? {
        scripts[customer]?[name]
    }

    /// Installs a loaded version; the previous one (if any) is released after.
    func install(_ script: LoadedScript) {
        lastLookup = nil
        let key = "\(script.customer)/\(script.name)"
        if pendingQuarantine.remove(key) != nil { script.quarantined = true }
        if let previous = scripts[script.customer]?[script.name] {
            script.quarantined = previous.quarantined
            script.requests = previous.requests
            script.errors = previous.errors
        }
        scripts[script.customer, default: [:]][script.name] = script
    }

    /// Removes a script; returns it so the caller can release it under the watchdog.
    func remove(customer: String, name: String) -> LoadedScript? {
        lastLookup = nil
        let removed = scripts[customer]?.removeValue(forKey: name)
        if scripts[customer]?.isEmpty == true { scripts[customer] = nil }
        return removed
    }

    func setQuarantine(customer: String, name: String, quarantined: Bool) {
        if let script = scripts[customer]?[name] {
            script.quarantined = quarantined
        } else if quarantined {
            pendingQuarantine.insert("\(customer)/\(name)")
        } else {
            pendingQuarantine.remove("\(customer)/\(name)")
        }
    }

    /// The sandbox limits of a cohort.
    static func sandboxLimits(_ limits: CohortConfiguration.Limits) -> SandboxLimits {
        SandboxLimits(instructions: limits.instructions, memoryBytes: limits.memoryBytes, wallMilliseconds: limits.wallMilliseconds)
    }
}
