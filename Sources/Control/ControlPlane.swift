#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Dispatch
import Foundation
import Logging
import Rollout
import Store
import Synchronization

/// Settings of `bulkhead control`.
public struct ControlPlaneConfiguration: Sendable {
    /// Where the cohort files are.
    public var cohortsDirectory: String
    /// The data directory.
    public var data: DataDirectory
    /// A scripts directory (`CUSTOMER/NAME.lua` + `customers.toml`), polled for changes.
    public var scriptsDirectory: String?
    /// Seed the demo customers.
    public var demo: Bool
    /// The executable that runs the checks (`check-script`, `check-artifact`): this binary.
    public var checkerExecutable: String
    /// Longest a cohort move waits for the host agent to apply it.
    public var moveDeadline: Double = 15
    /// Where the control store is, for messages (its file by default).
    public var storeLocation: String
    /// Opens the control store; retried every second until it opens. By default the
    /// SQLite file in the data directory.
    public var openStore: @Sendable () throws -> any ControlStore
    /// Opens the store the rollout driver writes through, when it is not the plane's
    /// own: in a fleet, one whose writes are fenced by the driver's leadership.
    public var openDriverStore: (@Sendable () throws -> any ControlStore)?
    /// Whether this process's rollout driver leads now (always, on one machine).
    public var driverLeads: @Sendable () -> Bool = { true }
    /// In a fleet: who is alive and who may act (hosts' report tokens, operators'
    /// sessions); nil on one machine.
    public var fleet: (any FleetDirectory)?

    /// Creates a configuration.
    public init(cohortsDirectory: String, data: DataDirectory, scriptsDirectory: String? = nil, demo: Bool = false,
                checkerExecutable: String) {
        self.cohortsDirectory = cohortsDirectory
        self.data = data
        self.scriptsDirectory = scriptsDirectory
        self.demo = demo
        self.checkerExecutable = checkerExecutable
        storeLocation = data.storeFile
        openStore = { try SQLiteStore(dataDirectory: data) }
    }
}

/// Why `bulkhead control` could not start.
public struct ControlPlaneStartError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, for a person.
    public var description: String
}

/// The control plane: the only writer of the control store (`DATA/bulkhead.sqlite`).
/// It owns the admin token, the customers' upload rate, the script checks (in child
/// processes), the cohorts it needs (names, order, limits), the scripts-directory
/// poller, `--demo` and the rollout driver. It never touches a worker: the host
/// agent follows the store's change feed; what only the host knows is asked over
/// admin.sock (`HostClient`).
///
/// Its state is either immutable after `start()` or behind its own lock. The
/// operations that read or write the store block, so the HTTP layer calls them off
/// Swift's cooperative threads; the checks that run a process (a script's, a rollout's
/// artifact's, up to the cohort's wall limit or 10 s) are async and awaited, holding no
/// thread while the process runs.
public final class ControlPlane: @unchecked Sendable {
    let configuration: ControlPlaneConfiguration
    let logger: Logger
    /// The control store, once open (retried every second until it opens).
    let storeSlot = Mutex<(any ControlStore)?>(nil)
    /// The driver's own store, once open (only with `openDriverStore`).
    let driverStoreSlot = Mutex<(any ControlStore)?>(nil)
    /// The admin token (`DATA/admin.token`), read or created by `start()`.
    public private(set) var adminToken = ""
    /// Upload rate per customer: a token bucket each.
    let uploadBuckets = Mutex<[String: (tokens: Double, at: Double)]>([:])
    /// The cohorts, in rollout order: from the files, or the host's last known good.
    let cohortsSlot = Mutex<[CohortConfiguration]>([])
    /// Where the API listens on TCP, once it does.
    let apiSlot = Mutex<String?>(nil)
    /// Scripts-directory problems already logged (logged once each).
    let reportedProblems = Mutex<Set<String>>([])
    /// The scripts directory's files as of their last store: a poll reads only files
    /// whose identity differs (new, changed, or not stored yet).
    let storedScriptFiles = Mutex(StoredScriptFiles())
    /// The rollout driver; created by `start()`.
    public private(set) var driver: RolloutDriver?
    /// The script deployment driver; created by `start()`.
    public private(set) var deployments: DeploymentDriver?
    /// What only the host knows, asked over admin.sock.
    public let host: HostClient
    /// In a fleet: the hosts' health reports, taken while this process leads.
    public let fleetReports: FleetReports?
    private let queue = DispatchQueue(label: "bulkhead.control")
    private var timer: DispatchSourceTimer?
    private var scanning = false

    /// Uploads per second a customer may make, and the burst it may save up.
    static let uploadRate = 5.0
    static let uploadBurst = 20.0

    /// A control plane; nothing starts until `start()`.
    public init(configuration: ControlPlaneConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        host = HostClient(data: configuration.data)
        fleetReports = configuration.fleet.map { FleetReports(directory: $0) }
    }

    /// The control store; throws `control-plane-unavailable` while it cannot be opened.
    var store: any ControlStore {
        get throws(ControlError) {
            if let store = storeSlot.withLock({ $0 }) { return store }
            if let error = openStore() {
                throw ControlError(.controlPlaneUnavailable, "the control store \(configuration.storeLocation) cannot be opened: \(error)")
            }
            guard let store = storeSlot.withLock({ $0 }) else {
                throw ControlError(.controlPlaneUnavailable, "the control store \(configuration.storeLocation) is not open")
            }
            return store
        }
    }

    /// The store the driver writes through: its own (fenced) one when configured,
    /// opened once; else the plane's.
    func driverStore() throws -> any ControlStore {
        guard let open = configuration.openDriverStore else { return try store }
        if let opened = driverStoreSlot.withLock({ $0 }) { return opened }
        let opened = try open()
        driverStoreSlot.withLock { $0 = opened }
        return opened
    }

    // MARK: - Start and stop

    /// Reads the admin token, the cohorts and the store; seeds `--demo`, stores the
    /// scripts directory once, starts the driver and the poller.
    public func start() throws {
        signal(SIGPIPE, SIG_IGN)
        signal(SIGXFSZ, SIG_IGN)
        do {
            try configuration.data.create()
            adminToken = try loadOrCreateAdminToken()
        } catch {
            throw ControlPlaneStartError(description: "\(error)")
        }
        let cohorts = try loadCohorts()
        cohortsSlot.withLock { $0 = cohorts }
        if let error = openStore() {
            // Served anyway: reads and writes answer control-plane-unavailable until it opens.
            logger.error("cannot open the control store; retrying every second", metadata: ["error": "\(error)"])
        }
        if configuration.demo { seedDemo(cohorts: cohorts.map(\.name)) }
        if let scripts = configuration.scriptsDirectory { syncScriptsDirectory(scripts) }
        let driver = RolloutDriver(
            store: { [unowned self] in
                do { return try self.driverStore() } catch { throw error }
            },
            replicaPath: configuration.data.replicaFile,
            checks: ArtifactChecker(executable: configuration.checkerExecutable),
            cohorts: cohorts, logger: logger, leads: configuration.driverLeads, fleet: fleetReports)
        driver.start()
        self.driver = driver
        let deployments = DeploymentDriver(
            store: { [unowned self] in try self.driverStore() }, replicaPath: configuration.data.replicaFile,
            logger: logger, leads: configuration.driverLeads, fleet: fleetReports)
        deployments.start()
        self.deployments = deployments
        startTimer()
    }

    /// Stops the drivers and the poller.
    public func stop() {
        driver?.stop()
        deployments?.stop()
        queue.sync {
            timer?.cancel()
            timer = nil
        }
    }

    /// Records where the API listens on TCP (answered by `/healthz`).
    public func apiListening(on address: String) {
        apiSlot.withLock { $0 = address }
    }

    /// Where the API listens on TCP, once it does.
    public var apiAddress: String? { apiSlot.withLock { $0 } }

    /// The cohorts, in rollout order.
    public var cohorts: [CohortConfiguration] { cohortsSlot.withLock { $0 } }

    private func openStore() -> (any Error)? {
        guard storeSlot.withLock({ $0 == nil }) else { return nil }
        do {
            let opened = try configuration.openStore()
            storeSlot.withLock { $0 = opened }
            logger.info("control store open", metadata: ["store": "\(opened.location)"])
            return nil
        } catch {
            return error
        }
    }

    private func startTimer() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + .milliseconds(250), repeating: .milliseconds(250))
        timer.setEventHandler { [unowned self] in
            if self.storeSlot.withLock({ $0 == nil }), let error = self.openStore() {
                self.logger.debug("control store still cannot be opened", metadata: ["error": "\(error)"])
            }
            if let directory = self.configuration.scriptsDirectory { self.rescanScripts(directory) }
        }
        timer.resume()
        self.timer = timer
    }

    private func rescanScripts(_ directory: String) {
        // Reading and storing happen off the timer's queue.
        guard !scanning else { return }
        scanning = true
        DispatchQueue.global().async { [self] in
            syncScriptsDirectory(directory)
            queue.async { self.scanning = false }
        }
    }

    // MARK: - Cohorts

    /// The cohort files, each bad one replaced by the host's last known good
    /// configuration of that pool (read-only from the replica); worker counts as a
    /// `cohort scale` left them. Throws when a bad file has no fallback.
    func loadCohorts() throws -> [CohortConfiguration] {
        let directory = CohortDirectory.load(configuration.cohortsDirectory)
        let reader = try? HostReplicaReader(path: configuration.data.replicaFile)
        let knownGood = (try? reader?.knownGoodCohorts()) ?? []
        let counts = (try? reader?.workerCounts()) ?? [:]
        var cohorts = directory.cohorts.map { original in
            var cohort = original
            if let workers = counts[cohort.name] {
                cohort.workers = workers
                cohort.canaryWorkers = min(cohort.canaryWorkers, workers)
            }
            return cohort
        }
        var fatal: [String] = []
        for error in directory.errors {
            let pool = CohortConfiguration.poolName(ofFile: error.file)
            if let fallback = knownGood.first(where: { $0.name == pool }), !cohorts.contains(where: { $0.name == pool }) {
                logger.error("cohort file refused; using the host's last known good config", metadata: [
                    "pool": "\(pool)", "error": "\(error)",
                ])
                cohorts.append(fallback)
            } else {
                fatal.append(error.description)
            }
        }
        guard fatal.isEmpty else { throw ControlPlaneStartError(description: fatal.joined(separator: "\n")) }
        return cohorts.sorted { $0.order < $1.order }
    }

    /// The cohorts as they are now (a scale or a new file changes them), for the driver.
    func refreshCohorts() -> [CohortConfiguration] {
        if let fresh = try? loadCohorts() { cohortsSlot.withLock { $0 = fresh } }
        return cohorts
    }

    func cohort(named name: String) -> CohortConfiguration? {
        cohorts.first { $0.name == name }
    }

    /// A cohort under the policy it runs (the store's active policy version for its
    /// pool): an upload is checked against the limits its scripts run under. A policy
    /// that cannot be read leaves the cohort file's, and is logged.
    func policyCohort(named name: String) -> CohortConfiguration? {
        guard let cohort = cohort(named: name) else { return nil }
        do {
            return try store.activePolicy(ofPool: name)?.applied(to: cohort) ?? cohort
        } catch {
            logger.error("the cohort's policy cannot be read; uploads are checked against its cohort file", metadata: [
                "cohort": "\(name)", "error": "\(error)",
            ])
            return cohort
        }
    }

    // MARK: - Tokens

    /// The customer a bearer token belongs to. The store finds the row by the token's
    /// hash; the final comparison is constant-time.
    public func authenticate(token: String) -> Customer? {
        let hash = TokenHash.of(token: token)
        guard let customer = try? store.customer(withTokenHash: hash), constantTimeEquals(customer.tokenHash, hash) else {
            return nil
        }
        return customer
    }

    /// Whether this process's rollout driver leads now (always, on one machine).
    public var leadsDriver: Bool { configuration.driverLeads() }

    /// In a fleet: who opened the operator session of `token`; nil when none is open,
    /// on one machine, or while the store cannot say.
    public func fleetOperator(token: String) async -> String? {
        guard let fleet = configuration.fleet else { return nil }
        return try? await fleet.operatorSessionActor(token: token)
    }

    /// Whether `token` is the admin token (constant-time).
    public func isAdminToken(_ token: String) -> Bool {
        !adminToken.isEmpty && constantTimeEquals(token, adminToken)
    }

    /// Reads `DATA/admin.token`, creating it (0600) on first start.
    ///
    /// Never through a link, and never a file another user owns or may read: a token
    /// planted by someone else is a token they know (see ``OwnedFile``).
    func loadOrCreateAdminToken() throws -> String {
        let path = configuration.data.adminToken
        if let fd = try OwnedFile.openForReading(path, secret: true) {
            defer { close(fd) }
            let token = String(decoding: try OwnedFile.readAll(fd, path: path), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if !token.isEmpty { return token }
            // An empty file of ours (a start cut short): replace it.
            unlink(path)
        }
        let token = TokenHash.newToken(prefix: TokenPrefix.admin)
        try OwnedFile.create(path, contents: Array((token + "\n").utf8), mode: 0o600)
        return token
    }

    // MARK: - Customers

    /// Adds a customer to a cohort; returns it with its new API token (shown once).
    public func addCustomer(name: String, cohort: String, actor: String) -> Result<(Customer, String), ControlError> {
        guard ResourceName.isValid(name) else {
            return .failure(ControlError(.invalidName, "'\(name)' is not a valid customer name (\(ResourceName.rule))"))
        }
        guard self.cohort(named: cohort) != nil else {
            let known = cohorts.map(\.name).sorted().joined(separator: ", ")
            return .failure(ControlError(.noCohort, "no cohort '\(cohort)'; cohorts: \(known)"))
        }
        let token = TokenHash.newToken(prefix: TokenPrefix.customer)
        do {
            let customer = try store.addCustomer(name: name, cohort: cohort, tokenHash: TokenHash.of(token: token), actor: actor)
            return .success((customer, token))
        } catch let error as StoreError where error.kind == .conflict {
            return .failure(ControlError(.exists, "customer '\(name)' already exists"))
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Gives the customer a new API token (made as `addCustomer` makes one) and
    /// returns it with the token, shown once; the old token stops working at once.
    public func rotateCustomerToken(name: String, actor: String) -> Result<(Customer, String), ControlError> {
        guard ResourceName.isValid(name) else {
            return .failure(ControlError(.invalidName, "'\(name)' is not a valid customer name (\(ResourceName.rule))"))
        }
        let token = TokenHash.newToken(prefix: TokenPrefix.customer)
        do {
            let customer = try store.rotateCustomerToken(name: name, tokenHash: TokenHash.of(token: token), actor: actor)
            return .success((customer, token))
        } catch let error as StoreError where error.kind == .notFound {
            return .failure(ControlError(.notFound, "no customer '\(name)'"))
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Removes the customer with every script of theirs (ending an unfinished
    /// deployment of any); the host agents unload the scripts from the feed.
    public func removeCustomer(name: String, actor: String) -> Result<Void, ControlError> {
        guard ResourceName.isValid(name) else {
            return .failure(ControlError(.invalidName, "'\(name)' is not a valid customer name (\(ResourceName.rule))"))
        }
        do {
            try store.removeCustomer(name: name, actor: actor)
        } catch let error as StoreError where error.kind == .notFound {
            return .failure(ControlError(.notFound, "no customer '\(name)'"))
        } catch {
            return .failure(Self.storeFailure(error))
        }
        logger.info("customer removed from the store", metadata: ["customer": "\(name)", "actor": "\(actor)"])
        return .success(())
    }

    /// Every customer.
    public func listCustomers() -> Result<[Customer], ControlError> {
        Result { try store.customers() }.mapError(Self.storeFailure)
    }

    /// A customer by name.
    public func customer(named name: String) -> Result<Customer, ControlError> {
        switch Result(catching: { try store.customer(named: name) }) {
        case .success(let found?): .success(found)
        case .success(nil): .failure(ControlError(.notFound, "no customer '\(name)'"))
        case .failure(let error): .failure(Self.storeFailure(error))
        }
    }

    /// Moves a customer to another cohort: the store records the move; the host agent
    /// applies it from the feed, warming the target pool before it switches the
    /// customer's assignment and the ingress. Answers once the host's replica has
    /// applied the move's revision, or says plainly that it has not yet.
    public func moveCustomer(_ name: String, to cohort: String, actor: String) -> Result<CustomerMoved, ControlError> {
        let from: String
        switch customer(named: name) {
        case .success(let found): from = found.cohort
        case .failure(let error): return .failure(error)
        }
        guard self.cohort(named: cohort) != nil else {
            return .failure(ControlError(.notFound, "no cohort '\(cohort)'"))
        }
        guard from != cohort else {
            return .failure(ControlError(.sameCohort, "\(name) is already in \(cohort)"))
        }
        let revision: Int
        do {
            let store = try store
            _ = try store.moveCustomer(name, toCohort: cohort, actor: actor)
            revision = try store.latestRevision()
        } catch {
            return .failure(Self.storeFailure(error))
        }
        logger.info("customer moved in the store; waiting for the host", metadata: [
            "customer": "\(name)", "from": "\(from)", "to": "\(cohort)", "revision": "\(revision)",
        ])
        // The replica is the agent's; here it is only read.
        let deadline = Date().addingTimeInterval(configuration.moveDeadline)
        var reader: HostReplicaReader?
        while Date() < deadline {
            if reader == nil { reader = try? HostReplicaReader(path: configuration.data.replicaFile) }
            if let applied = (try? reader?.appliedRevision()) ?? nil, applied >= revision {
                return .success(CustomerMoved(customer: name, from: from, to: cohort))
            }
            usleep(10_000)
        }
        return .failure(ControlError(
            .hostUnavailable,
            "\(name) is moved to \(cohort) in the control store (revision \(revision)), but the host agent has not applied it within "
                + "\(Int(configuration.moveDeadline)) s; it will once it follows the feed (see bulkhead status)"))
    }

    // MARK: - Scripts

    /// Checks a new version of a script before anything is stored, refusing in this
    /// order: its name, the customer's pool, its size, its encoding, the customer's
    /// upload rate (a refusal after this still spends the upload), then the script
    /// itself in a `check-script` process, awaited. Only what passes can be stored
    /// (`storeScript`), so nothing is stored when validation fails.
    public func checkScript(customer: Customer, name: String, source: Data) async -> Result<CheckedScript, ControlError> {
        guard ResourceName.isValid(name) else {
            return .failure(ControlError(.invalidName, "'\(name)' is not a valid script name (\(ResourceName.rule))"))
        }
        guard let limits = policyCohort(named: customer.cohort)?.limits else {
            return .failure(ControlError(.noPool, "the \(customer.cohort) pool is not configured"))
        }
        guard source.count <= limits.maxScriptBytes else {
            return .failure(ControlError(.tooLarge, "the script is \(source.count) bytes; the \(customer.cohort) cohort allows \(limits.maxScriptBytes) (limits.max_script_kb = \(limits.maxScriptKB))"))
        }
        guard let text = String(data: source, encoding: .utf8) else {
            return .failure(ControlError(.notUTF8, "the script is not UTF-8 text"))
        }
        guard takeUploadToken(customer: customer.name) else {
            return .failure(ControlError(.rateLimited, "more than \(Int(Self.uploadRate)) uploads per second; wait and retry"))
        }
        if let refusal = await ScriptChecker(executable: configuration.checkerExecutable).check(name: name, source: text, limits: limits) {
            return .failure(refusal)
        }
        return .success(CheckedScript(customer: customer.name, name: name, source: text))
    }

    /// Stores a checked script as its next version; the host ships it to every worker
    /// of the customer's pool from the feed. Blocks on the store's write.
    public func storeScript(_ script: CheckedScript, actor: String) -> Result<ScriptVersion, ControlError> {
        do {
            let store = try store
            // A new version lifts a quarantine: the host does that as it applies the
            // version from the feed (quarantines are the host's).
            let version = try store.putScriptVersion(customer: script.customer, name: script.name, source: script.source, actor: actor)
            forgetScriptFile(customer: script.customer, name: script.name)
            return .success(version)
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// A customer's scripts.
    public func listScripts(customer: String) -> Result<[ScriptSummary], ControlError> {
        Result { showingHostQuarantines(try store.scripts(ofCustomer: customer)) }.mapError(Self.storeFailure)
    }

    /// Every customer's scripts.
    public func allScripts() -> Result<[ScriptSummary], ControlError> {
        Result { showingHostQuarantines(try store.allScripts()) }.mapError(Self.storeFailure)
    }

    /// The summaries with the quarantines the host holds: the host quarantines a
    /// script that ends its workers and lifts it when a new version arrives, in its
    /// replica (read-only here); the control store keeps no quarantine of its own.
    /// A replica that cannot be read (no host yet) shows none.
    func showingHostQuarantines(_ summaries: [ScriptSummary]) -> [ScriptSummary] {
        guard !summaries.isEmpty, let reader = try? HostReplicaReader(path: configuration.data.replicaFile),
              let held = try? reader.quarantines()
        else { return summaries }
        let reasons = Dictionary(held.map { ($0.script, $0.reason) }, uniquingKeysWith: { first, _ in first })
        return summaries.map { summary in
            var shown = summary
            let reason = reasons[ScriptAddress(customer: summary.customer, name: summary.name)]
            shown.quarantined = reason != nil
            shown.quarantineReason = reason
            return shown
        }
    }

    /// One script with its active source.
    public func script(customer: String, name: String) -> Result<(ScriptSummary, String), ControlError> {
        do {
            let store = try store
            guard let stored = try store.script(customer: customer, name: name) else { return .failure(.noSuchScript(name)) }
            let source = try store.scriptSource(customer: customer, name: name, version: nil)
            return .success((showingHostQuarantines([stored])[0], source.source))
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Every version of a script.
    public func scriptVersions(customer: String, name: String) -> Result<[ScriptVersion], ControlError> {
        do {
            let store = try store
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
            return .success(try store.scriptVersions(customer: customer, name: name))
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Whether the script exists (before asking the host for its log lines).
    public func requireScript(customer: String, name: String) -> Result<Void, ControlError> {
        do {
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
            return .success(())
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Makes an earlier version active (the previous one, or `version`).
    public func rollbackScript(customer: String, name: String, to version: Int?, actor: String) -> Result<ScriptSummary, ControlError> {
        do {
            let store = try store
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
            let summary = try store.rollbackScript(customer: customer, name: name, to: version, actor: actor)
            forgetScriptFile(customer: customer, name: name)
            return .success(summary)
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Deletes a script: it stops being served.
    public func deleteScript(customer: String, name: String, actor: String) -> Result<Void, ControlError> {
        do {
            let store = try store
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
            try store.deleteScript(customer: customer, name: name, actor: actor)
            forgetScriptFile(customer: customer, name: name)
            return .success(())
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    private func takeUploadToken(customer: String) -> Bool {
        uploadBuckets.withLock { buckets in
            let now = Date().timeIntervalSince1970
            var bucket = buckets[customer] ?? (Self.uploadBurst, now)
            bucket.tokens = min(Self.uploadBurst, bucket.tokens + (now - bucket.at) * Self.uploadRate)
            bucket.at = now
            guard bucket.tokens >= 1 else {
                buckets[customer] = bucket
                return false
            }
            bucket.tokens -= 1
            buckets[customer] = bucket
            return true
        }
    }

    // MARK: - Rollouts (the driver)

    private var rolloutDriver: Result<RolloutDriver, ControlError> {
        guard let driver else {
            return .failure(ControlError(.controlPlaneUnavailable, "the rollout driver is not running yet; try again"))
        }
        return .success(driver)
    }

    /// Validates an artifact, stores it as the next version of its kind and starts
    /// rolling it out; returns the rollout id (see `RolloutDriver.startRollout`).
    public func startRollout(kind: ArtifactKind, content: String, actor: String) async -> Result<Int, ControlError> {
        let driver: RolloutDriver
        switch rolloutDriver {
        case .success(let running): driver = running
        case .failure(let error): return .failure(error)
        }
        // Planned over the pools as they are now (a scale changes them). Read on a
        // dispatch thread: the cohort files, the replica and the driver's queue block.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                driver.setCohorts(self.refreshCohorts())
                continuation.resume()
            }
        }
        return await driver.startRollout(kind: kind, content: content, actor: actor)
    }

    /// Pause, resume, abort or promote a rollout.
    public func operate(rollout id: Int, command: RolloutDriver.Command, actor: String) -> Result<RolloutStatus, ControlError> {
        rolloutDriver.flatMap { $0.operate(rollout: id, command: command, actor: actor) }
    }

    /// A rollout's status, running or ended.
    public func rolloutStatus(id: Int) -> Result<RolloutStatus, ControlError> {
        rolloutDriver.flatMap { $0.status(id: id) }
    }

    /// The last 50 rollouts, newest first.
    public func rolloutSummaries() -> Result<[RolloutSummary], ControlError> {
        (driver.map { $0.records(limit: 50) } ?? Result { try store.rollouts(limit: 50) }.mapError(Self.storeFailure)).map { records in
            records.map { RolloutSummary(id: $0.id, kind: $0.kind.rawValue, version: $0.version, from: $0.fromVersion, status: $0.status) }
        }
    }

    /// The recent rollouts with their status, for the status page.
    public func recentRollouts(limit: Int) -> [(id: Int, status: RolloutStatus)] {
        driver?.recent(limit: limit) ?? []
    }

    static func storeFailure(_ error: any Error) -> ControlError {
        (error as? ControlError) ?? .fromStore(error)
    }
}

/// A new version of a script that passed every check of an upload
/// (`ControlPlane.checkScript`, the only maker of one), ready for `storeScript`.
public struct CheckedScript: Sendable {
    /// The customer it belongs to.
    public let customer: String
    /// The script's name.
    public let name: String
    /// Its source, UTF-8 text.
    public let source: String

    fileprivate init(customer: String, name: String, source: String) {
        self.customer = customer
        self.name = name
        self.source = source
    }
}

/// One line of `rollout list`.
public struct RolloutSummary: Codable, Sendable {
    /// Rollout id.
    public var id: Int
    /// Artifact kind.
    public var kind: String
    /// The version it ships.
    public var version: Int
    /// The version it replaces.
    public var from: Int
    /// Its state.
    public var status: String
}

/// A customer moved between cohorts (`cohort move`).
public struct CustomerMoved: Codable, Sendable, Equatable {
    /// The customer.
    public var customer: String
    /// The cohort it left.
    public var from: String
    /// The cohort it is in now.
    public var to: String
}
