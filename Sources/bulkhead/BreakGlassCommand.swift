#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BulkheadCore
import ControlAPI
import Foundation
import NIOHTTP1
import Store
import Supervisor

/// `bulkhead break-glass`: the instant path, audited. Break glass is the host's own
/// override layer in its replica (`DATA/host.sqlite`): with the host agent running it
/// goes over the host routes of `admin.sock` (applied at once; control may be down);
/// with none running it works on the replica file, under the agent's lock, and
/// `bulkhead serve` applies it on start. Needs neither the HTTP API nor a token. It
/// acts only on a replica that exists: a mistyped `--data` is an error naming the
/// path, never a new empty file. An agent that holds the lock but does not answer is
/// never written behind: the command says so and changes nothing.
struct BreakGlassCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "break-glass",
        abstract: "Freeze rollouts or pin every pool to an artifact version on this host, with or without a running agent.",
        subcommands: [Freeze.self, Unfreeze.self, Rollback.self, Unpin.self, Status.self]
    )

    /// Runs the host route `method path` (with `body(actor)`) on the agent when it
    /// answers, else `offline` on the replica (which must exist; a `writes` action
    /// only while it holds the agent's lock); returns the answer.
    static func perform<Answer: Decodable, Body: Encodable>(
        _ method: HTTPMethod, _ path: String, body: ((String) -> Body)?, data: String, writes: Bool,
        offline: (HostReplica, String) throws -> Answer
    ) throws -> Answer {
        let actor = BreakGlass.actor()
        let directory = DataDirectory(data)
        let client = APIClient(data: data)
        // A read first, with nothing to apply: a stopped agent keeps what was sent in
        // its socket and would apply a write when it resumes, after this command had
        // said nothing was changed. Only an agent that answers is sent the write.
        let statusPath = "/v1/host/break-glass"
        if let probe = try? client.send(.GET, statusPath, to: .host, timeout: 5) {
            let answer: APIClient.Answer
            if method == .GET && path == statusPath {
                answer = probe
            } else if let sent = try? client.send(method, path, body: try body.map { try JSONEncoder().encode($0(actor)) }, to: .host, timeout: 10) {
                answer = sent
            } else {
                fail("the host agent at \(directory.adminSocket) took the request but did not answer within 10 s; "
                     + "it may still apply it. Check with: bulkhead break-glass status --data \(data)")
            }
            try APIClient.check(answer)
            guard let decoded = try? APIClient.decoder.decode(Answer.self, from: answer.body) else {
                fail("the host agent sent an answer this CLI cannot read: \(answer.text.prefix(200))")
            }
            return decoded
        }
        // No agent answers: straight to the replica, if there is one.
        let replica = try openReplica(directory)
        let lock = writes ? try takeAgentLock(directory) : -1
        defer { if lock >= 0 { close(lock) } }
        // A freeze or pins a control store from before still holds come over first
        // (once), as the agent's start would bring them: this write goes on top.
        if writes, let store = try? controlStore(directory) {
            _ = try? BreakGlass.importLegacy(from: store, into: replica)
        }
        do {
            return try offline(replica, actor)
        } catch {
            FileHandle.standardError.write(Data("bulkhead: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// Opens the existing replica of `directory`; a missing one is an error naming its
    /// path, and nothing is created.
    static func openReplica(_ directory: DataDirectory) throws -> HostReplica {
        var configuration = SQLiteStoreConfiguration()
        configuration.createIfMissing = false
        do {
            return try HostReplica(dataDirectory: directory, configuration: configuration)
        } catch {
            FileHandle.standardError.write(Data(
                "bulkhead: no host agent answers at \(directory.adminSocket), and \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// Takes the host agent's lock (`DATA/run/supervisor.lock`) without waiting, for
    /// the length of an offline write; returns its descriptor (-1: no `run/`, so no
    /// agent can be running). A lock held means an agent runs that did not answer on
    /// `admin.sock`: nothing is written behind its back.
    static func takeAgentLock(_ directory: DataDirectory) throws -> Int32 {
        let path = directory.lockFile
        // O_NOFOLLOW: never a file a link points at.
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 {
            if errno == ENOENT { return -1 }
            FileHandle.standardError.write(Data("bulkhead: \(SystemError("open \(path)")); nothing was changed\n".utf8))
            throw ExitCode.failure
        }
        do {
            try OwnedFile.check(descriptor: fd, path: path, is: .regularFile, singleLink: true)
        } catch {
            close(fd)
            FileHandle.standardError.write(Data("bulkhead: \(error); nothing was changed\n".utf8))
            throw ExitCode.failure
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var holder = [UInt8](repeating: 0, count: 32)
            let count = read(fd, &holder, holder.count)
            close(fd)
            let pid = count > 0 ? String(decoding: holder[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            FileHandle.standardError.write(Data("""
                bulkhead: a host agent (bulkhead serve, pid \(pid)) holds \(path) but does not answer on \(directory.adminSocket); \
                nothing was changed. Break glass is not written behind a running agent: check it (is it stopped or hung?), \
                or stop it and run this again.\n
                """.utf8))
            throw ExitCode.failure
        }
        return fd
    }

    /// The control store of `directory`, for reading (never created).
    static func controlStore(_ directory: DataDirectory) throws -> SQLiteStore {
        var configuration = SQLiteStoreConfiguration()
        configuration.createIfMissing = false
        configuration.busyTimeoutSeconds = 1
        return try SQLiteStore(dataDirectory: directory, configuration: configuration)
    }

    /// The control store's history (read-only) when it can be read, else the replica's.
    static func history(_ directory: DataDirectory, replica: HostReplica) throws -> BreakGlass.History {
        try BreakGlass.History.read(store: { try controlStore(directory) }, replica: replica)
    }

    /// The status after a change made on the replica, with a note that the agent applies it on start.
    static func offlineStatus(_ replica: HostReplica, _ directory: DataDirectory) throws -> BreakGlass.Status {
        let status = try BreakGlass.status(replica: replica, history: try? history(directory, replica: replica))
        FileHandle.standardError.write(Data(
            "bulkhead: no host agent running; written to \(replica.path) (bulkhead serve applies it on start)\n".utf8))
        return status
    }

    static func show(_ status: BreakGlass.Status, json: Bool) {
        if json {
            print((try? JSONOutput.line(status)) ?? "{}")
            return
        }
        print("frozen: \(status.frozen ? "yes" : "no")")
        print("pinned: \(status.pins.isEmpty ? "none" : status.pins.sorted { $0.key < $1.key }.map { "\($0.key) v\($0.value)" }.joined(separator: ", "))")
        print("rollouts running: \(status.running.isEmpty ? "none" : status.running.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }

    /// Freezes or thaws the fleet's rollouts in its store, audited as this user.
    static func fleetFreeze(_ frozen: Bool, _ options: EtcdOptions) throws {
        let store = FleetConnection.store(options)
        FleetConnection.run(frozen ? "freeze the fleet" : "unfreeze the fleet") {
            try store.setFleetFrozen(frozen, actor: "etcd-operator:\(FleetConnection.actor)")
        }
        print("fleet: rollouts \(frozen ? "frozen" : "may advance") (\(options.prefix) on \(options.endpoints ?? ""))")
    }

    static func artifactKind(_ text: String) throws -> ArtifactKind {
        guard let kind = ArtifactKind(rawValue: text) else { throw ValidationError("--kind is one of runtime, rules, binary, policy") }
        return kind
    }

    struct Freeze: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every rollout from advancing (automatic rollbacks still happen).",
            discussion: "With --etcd: fleet-wide, written straight to the fleet's store (the leading driver advances and starts nothing).")
        @OptionGroup var dataOptions: ClientOptions
        func run() throws {
            if dataOptions.etcd.endpoints != nil { return try fleetFreeze(true, dataOptions.etcd) }
            let directory = DataDirectory(dataOptions.data)
            show(try perform(.POST, "/v1/host/break-glass/freeze", body: { BreakGlassChange(actor: $0) }, data: dataOptions.data, writes: true) { replica, actor in
                try BreakGlass.setFrozen(true, replica: replica, actor: actor)
                return try offlineStatus(replica, directory)
            }, json: false)
        }
    }

    struct Unfreeze: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let rollouts advance again.", discussion: "With --etcd: lifts the fleet-wide freeze (a host's own freeze stays).")
        @OptionGroup var dataOptions: ClientOptions
        func run() throws {
            if dataOptions.etcd.endpoints != nil { return try fleetFreeze(false, dataOptions.etcd) }
            let directory = DataDirectory(dataOptions.data)
            show(try perform(.POST, "/v1/host/break-glass/unfreeze", body: { BreakGlassChange(actor: $0) }, data: dataOptions.data, writes: true) { replica, actor in
                try BreakGlass.setFrozen(false, replica: replica, actor: actor)
                return try offlineStatus(replica, directory)
            }, json: false)
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pin every pool to a version of an artifact (default: the newest that completed a rollout) and abort its rollout.",
            discussion: """
                Prints what it will pin where, then asks for confirmation on a terminal (--yes skips the question; \
                without a terminal --yes is required). The pin holds until `bulkhead break-glass unpin --kind K`.
                """)
        @Option(help: "runtime, rules, binary or policy.") var kind: String
        @Option(help: "The version to pin (default: the newest version that completed a rollout; 0: the one built in).") var to: Int?
        @Flag(help: "Pin a version that a rollout's gate rejected (refused without this).") var allowRejected = false
        @Flag(help: "Do not ask for confirmation.") var yes = false
        @OptionGroup var dataOptions: DataOptions

        func run() throws {
            let artifact = try artifactKind(kind)
            let allowRejected = allowRejected
            let directory = DataDirectory(dataOptions.data)
            let plan: BreakGlass.RollbackPlan = try perform(
                .POST, "/v1/host/break-glass/plan",
                body: { _ in BreakGlassRollback(kind: artifact, version: to, allowRejected: allowRejected, actor: nil) },
                data: dataOptions.data, writes: false
            ) { replica, _ in
                try BreakGlass.plan(kind: artifact, to: to, allowRejected: allowRejected, history: try history(directory, replica: replica),
                                    running: try BreakGlass.storedVersions(kind: artifact, replica: replica))
            }
            print(Self.describe(plan))
            fflush(nil)
            if !yes {
                guard isatty(STDIN_FILENO) == 1 else {
                    FileHandle.standardError.write(Data(
                        "bulkhead: no terminal to confirm on; nothing was changed. Pass --yes to pin without asking\n".utf8))
                    throw ExitCode.failure
                }
                print("Pin every pool to \(kind) v\(plan.version)? Type yes to go on: ", terminator: "")
                fflush(nil)
                guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
                    FileHandle.standardError.write(Data("bulkhead: not confirmed; nothing was changed\n".utf8))
                    throw ExitCode.failure
                }
            }
            // The version confirmed is the version sent: what was shown is what is pinned.
            show(try perform(
                .POST, "/v1/host/break-glass/rollback",
                body: { BreakGlassRollback(kind: artifact, version: plan.version, allowRejected: allowRejected, actor: $0) },
                data: dataOptions.data, writes: true
            ) { replica, actor in
                // The content of the version from the control store when it can be
                // read (the replica may not hold it yet), so serve starts on it alone.
                let store = try? controlStore(directory)
                try BreakGlass.rollback(
                    kind: artifact, to: plan.version, allowRejected: allowRejected, history: try history(directory, replica: replica),
                    replica: replica, content: { version in (try? store?.artifact(kind: artifact, version: version))??.content }, actor: actor)
                return try offlineStatus(replica, directory)
            }, json: false)
            print("\(kind) pinned to v\(plan.version) until: bulkhead break-glass unpin --kind \(kind)")
        }

        /// What the rollback will do, for the operator to check before saying yes.
        static func describe(_ plan: BreakGlass.RollbackPlan) -> String {
            var lines = ["break-glass rollback: pin the \(plan.kind) to v\(plan.version) on every pool",
                         "  why v\(plan.version): \(plan.why)"]
            for pool in plan.pools {
                let from = pool.from.isEmpty ? "no worker running" : "runs " + pool.from.map { "v\($0)" }.joined(separator: ", ")
                let change = pool.from == [plan.version] ? "(no change)" : "→ v\(plan.version)"
                lines.append("  \(pool.pool): \(from) \(change)")
            }
            if let aborts = plan.aborts { lines.append("  aborts rollout \(aborts)") }
            for warning in plan.warnings { lines.append("  WARNING: \(warning)") }
            lines.append("  the pin holds until: bulkhead break-glass unpin --kind \(plan.kind.rawValue)")
            return lines.joined(separator: "\n")
        }
    }

    struct Unpin: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release a break-glass pin; the pinned version stays every pool's current one (nothing changes now).")
        @Option(help: "runtime, rules, binary or policy.") var kind: String
        @OptionGroup var dataOptions: DataOptions
        func run() throws {
            let artifact = try artifactKind(kind)
            let directory = DataDirectory(dataOptions.data)
            show(try perform(.POST, "/v1/host/break-glass/unpin", body: { BreakGlassUnpin(kind: artifact, actor: $0) }, data: dataOptions.data, writes: true) { replica, actor in
                // The host's pools are those it keeps a last known good cohort of.
                let pools = (try replica.knownGoodCohorts()).map(\.configuration.name)
                try BreakGlass.unpin(kind: artifact, replica: replica, pools: pools, actor: actor)
                return try offlineStatus(replica, directory)
            }, json: false)
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the freeze, the pins and the rollouts running.",
            discussion: "With --etcd: the fleet-wide freeze and the rollouts running (each host's own overrides: bulkhead status --etcd).")
        @OptionGroup var dataOptions: ClientOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            if dataOptions.etcd.endpoints != nil {
                let store = FleetConnection.store(dataOptions.etcd)
                let status = FleetConnection.run("read the fleet's freeze") {
                    BreakGlass.Status(
                        frozen: try store.isFleetFrozen(), pins: [:],
                        running: Dictionary(uniqueKeysWithValues: try ArtifactKind.allCases.compactMap { kind in
                            try store.runningRollout(kind: kind).map { (kind.rawValue, "\($0.id) (\($0.status))") }
                        }))
                }
                return show(status, json: json)
            }
            let directory = DataDirectory(dataOptions.data)
            show(try perform(.GET, "/v1/host/break-glass", body: Optional<(String) -> BreakGlassChange>.none, data: dataOptions.data, writes: false) { replica, _ in
                try BreakGlass.status(replica: replica, history: try? history(directory, replica: replica))
            }, json: json)
        }
    }
}

/// `bulkhead events`: the audit log and rollout decisions as a timeline, read from
/// the store (it works whether or not the supervisor runs).
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print the audit log and rollout decisions; --follow keeps printing new ones.")
    @OptionGroup var dataOptions: ClientOptions
    @Flag(help: "Keep printing new events.") var follow = false
    @Flag(help: "One JSON object per line.") var json = false
    @Option(help: "How many past events to print first.") var last: Int = 50

    func run() throws {
        var configuration = SQLiteStoreConfiguration()
        configuration.createIfMissing = false
        let store: any BulkheadStore
        if dataOptions.etcd.endpoints != nil {
            store = FleetConnection.store(dataOptions.etcd)
        } else {
            do {
                store = try SQLiteStore(dataDirectory: DataDirectory(dataOptions.data), configuration: configuration)
            } catch {
                FileHandle.standardError.write(Data("bulkhead: cannot open the store: \(error)\n".utf8))
                throw ExitCode.failure
            }
        }
        // The host's own decisions (quarantines, scale, last known good) are in its
        // replica's log: both logs print as one timeline, by time (a fleet's: the store's only).
        let replica = dataOptions.etcd.endpoints != nil
            ? nil : try? HostReplica(dataDirectory: DataDirectory(dataOptions.data), configuration: configuration)
        var after = max(0, try store.latestAuditEventID() - last)
        var replicaAfter = max(0, (try replica?.latestAuditEventID() ?? 0) - last)
        let formatter = ISO8601DateFormatter()
        var first = true
        while true {
            let controlEvents = try store.auditEvents(after: after, limit: 500)
            let hostEvents = (try? replica?.auditEvents(after: replicaAfter, limit: 500)) ?? []
            after = controlEvents.last?.id ?? after
            replicaAfter = hostEvents.last?.id ?? replicaAfter
            var events = (controlEvents + hostEvents).sorted { $0.at < $1.at }
            if first { events = Array(events.suffix(max(0, last))) }
            first = false
            for event in events {
                if json {
                    print(try Self.jsonLine(event))
                } else {
                    let time = String(formatter.string(from: event.at).dropFirst(5).prefix(14)).replacingOccurrences(of: "T", with: " ")
                    let line = "\(time)  \(event.actor.padding(toLength: 18, withPad: " ", startingAt: 0)) "
                        + "\(event.action.rawValue.padding(toLength: 19, withPad: " ", startingAt: 0)) \(event.subject)"
                    print(line.count > 80 ? String(line.prefix(79)) + "…" : line)
                    // What it changed or decided, wrapped under it within 80 columns.
                    for part in Self.wrapped(Self.summary(ofDetail: event.detail), indent: 16, width: 80) { print(part) }
                }
            }
            fflush(nil)
            if !follow { return }
            if events.isEmpty { usleep(250_000) }
        }
    }

    /// One event as `events --json` prints it: its detail the JSON it is, not a string of it.
    struct EventLine: Encodable {
        var id: Int
        var at: Date
        var actor: String
        var action: String
        var subject: String
        var detail: JSONValue
    }

    /// One event as one line of JSON.
    static func jsonLine(_ event: AuditEvent) throws -> String {
        let detail = (try? JSONDecoder().decode(JSONValue.self, from: Data(event.detail.utf8))) ?? .string(event.detail)
        return try JSONOutput.line(EventLine(
            id: event.id, at: event.at, actor: event.actor, action: event.action.rawValue, subject: event.subject, detail: detail))
    }

    /// `text` in lines of at most `width` columns, each starting with `indent` spaces;
    /// a word longer than a line is cut.
    static func wrapped(_ text: String, indent: Int, width: Int) -> [String] {
        let room = width - indent
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ") {
            var word = Substring(word)
            while word.count > room {
                if !current.isEmpty {
                    lines.append(current)
                    current = ""
                }
                lines.append(String(word.prefix(room)))
                word = word.dropFirst(room)
            }
            if current.isEmpty {
                current = String(word)
            } else if current.count + 1 + word.count <= room {
                current += " " + word
            } else {
                lines.append(current)
                current = String(word)
            }
        }
        if !current.isEmpty { lines.append(current) }
        let pad = String(repeating: " ", count: indent)
        return lines.map { pad + $0 }
    }

    /// What an event's detail says, for a person: its `message` when it has one (a
    /// decision's, with its numbers), else its plain fields as `key=value`.
    static func summary(ofDetail detail: String) -> String {
        guard case .object(let fields)? = try? JSONDecoder().decode(JSONValue.self, from: Data(detail.utf8)) else { return "" }
        if case .string(let message)? = fields["message"] { return ControlCharacters.escaped(message) }
        return fields.keys.sorted().compactMap { key in fields[key]?.plainText.map { "\(key)=\($0)" } }.joined(separator: " ")
    }
}

/// Any JSON value, decoded as it is (a boolean stays a boolean) and encoded back.
enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// A scalar as a person reads it (strings escaped); nil for arrays and objects.
    var plainText: String? {
        switch self {
        case .null: "null"
        case .bool(let value): String(value)
        case .int(let value): String(value)
        case .double(let value): String(value)
        case .string(let value): ControlCharacters.escaped(value)
        case .array, .object: nil
        }
    }
}
