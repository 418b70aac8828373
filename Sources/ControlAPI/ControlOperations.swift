import BulkheadCore
import Control
import Foundation
import Rollout
import Store
import HostMetrics
import Supervisor

/// The control plane's operations, one typed call each: typed arguments, the API's
/// Codable bodies as results, `ControlError` as the only failure. The router maps
/// requests to these calls and errors to statuses; nothing here knows HTTP. They
/// run in `bulkhead control`: the store's writes through the `ControlPlane`, what
/// only the host knows through its `HostClient` (admin.sock).
public struct ControlOperations: Sendable {
    let plane: ControlPlane

    /// Operations on `plane`.
    public init(plane: ControlPlane) {
        self.plane = plane
    }

    // MARK: A customer's own scripts

    /// Validates and stores a new version of `customer`'s script `name`. The check is
    /// awaited here (its process holds no thread); only the store's write runs on a
    /// blocking thread, and a refused upload stores nothing.
    ///
    /// With `live` false the version is stored without going live (deploy it
    /// later). Otherwise the customer's cohort decides (`[deploy] strategy`): at
    /// once, or — for a script that has a version already — as a gradual deployment
    /// started here, whose id the answer carries.
    public func putScript(
        _ customer: Customer, name: String, source: Data, live: Bool = true, actor: String
    ) async throws(ControlError) -> UploadAnswer {
        let checked = try await plane.checkScript(customer: customer, name: name, source: source).get()
        let defaults = plane.deployDefaults(ofCohort: customer.cohort)
        guard !live || defaults.strategy == .gradual else {
            return UploadAnswer(try await call { plane.storeScript(checked, actor: actor) })
        }
        if live, let running = try await call({ plane.unfinishedDeployment(customer: customer.name, name: name) }) {
            // Refused before anything is stored.
            throw ControlError(.conflict, "deployment \(running.id) of '\(name)' (version \(running.version)) has not ended; "
                + "wait for it, or abort it, before uploading a version to deploy")
        }
        let stored = try await call { plane.storeScriptInactive(checked, actor: actor) }
        var answer = UploadAnswer(stored)
        let summary = try await call { plane.script(customer: customer.name, name: name) }.0
        answer.live = summary.activeVersion == stored.version
        guard live, !answer.live else { return answer }
        let deployment = try await plane.startDeployment(
            customer: customer.name, name: name, order: DeploymentOrder(version: stored.version, strategy: .gradual), actor: actor
        ).get()
        answer.deployment = deployment.record.id
        return answer
    }

    // MARK: Deployments (a customer's, or any as the operator)

    /// Starts a deployment of a stored version.
    public func startDeployment(
        of customer: String, name: String, _ start: StartDeployment, actor: String
    ) async throws(ControlError) -> DeploymentInfo {
        let order = try start.order()
        return DeploymentInfo(try await plane.startDeployment(customer: customer, name: name, order: order, actor: actor).get())
    }

    /// A script's deployments, newest first.
    public func deployments(of customer: String, name: String) async throws(ControlError) -> DeploymentList {
        DeploymentList(deployments: try await call { plane.deployments(customer: customer, name: name) }.map(DeploymentInfo.init))
    }

    /// One deployment.
    public func deployment(of customer: String, name: String, id: Int) async throws(ControlError) -> DeploymentInfo {
        DeploymentInfo(try await call { plane.deployment(customer: customer, name: name, id: id) })
    }

    /// Pauses, resumes, aborts or promotes a deployment.
    public func operate(
        deployment id: Int, of customer: String, name: String, _ operation: DeploymentOperation, actor: String
    ) async throws(ControlError) -> DeploymentInfo {
        DeploymentInfo(try await plane.operateDeployment(operation, id: id, customer: customer, name: name, actor: actor).get())
    }

    /// `customer`'s scripts.
    public func scripts(of customer: String) async throws(ControlError) -> ScriptList {
        ScriptList(scripts: try await call { plane.listScripts(customer: customer) }.map { ScriptInfo($0) })
    }

    /// One script with its active source.
    public func script(of customer: String, name: String) async throws(ControlError) -> ScriptDetail {
        let (summary, source) = try await call { plane.script(customer: customer, name: name) }
        return ScriptDetail(script: ScriptInfo(summary), source: source)
    }

    /// Every stored version of a script.
    public func versions(of customer: String, name: String) async throws(ControlError) -> VersionList {
        VersionList(versions: try await call { plane.scriptVersions(customer: customer, name: name) }.map(VersionInfo.init))
    }

    /// A script's recent log lines (kept by the host that runs it).
    public func logs(of customer: String, name: String) async throws(ControlError) -> LogLines {
        try await call { plane.requireScript(customer: customer, name: name) }
        var lines = try await plane.host.logs(customer: customer, name: name)
        // The deployments' decisions, with their numbers, after the host's lines.
        lines.lines += try await call { .success(plane.deploymentLogLines(customer: customer, name: name)) }
        return lines
    }

    /// Makes an earlier version active: `version`, or the one before the active one.
    public func rollbackScript(of customer: String, name: String, to version: Int?, actor: String) async throws(ControlError) -> ScriptInfo {
        ScriptInfo(try await call { plane.rollbackScript(customer: customer, name: name, to: version, actor: actor) })
    }

    /// Deletes a script and every version of it.
    public func deleteScript(of customer: String, name: String, actor: String) async throws(ControlError) {
        try await call { plane.deleteScript(customer: customer, name: name, actor: actor) }
    }

    // MARK: Operators

    /// The host at a glance, as the host agent answers it.
    public func status() async throws(ControlError) -> HostStatus {
        try await plane.host.status()
    }

    /// The host's metrics text, as the host agent renders it.
    public func metrics() async throws(ControlError) -> String {
        try await plane.host.metricsText()
    }

    // MARK: A fleet

    /// The fleet's hosts with what each last reported (`bulkhead status --etcd`).
    public func fleet() async throws(ControlError) -> FleetStatus {
        try await fleetReports().status(answeredBy: plane.apiAddress, leading: plane.leadsDriver)
    }

    /// Takes host `name`'s health report, sent with `token`; only the leading control
    /// process takes reports (the host then asks the store who leads).
    public func acceptReport(_ report: HostReport, from name: String, token: String) async throws(ControlError) {
        let reports = try fleetReports()
        guard plane.leadsDriver else {
            throw ControlError(.controlPlaneUnavailable, "this control process does not lead the fleet now; reports go to the leader (driver/leader)")
        }
        try await reports.accept(report, from: name, token: token)
    }

    private func fleetReports() throws(ControlError) -> FleetReports {
        guard let reports = plane.fleetReports else {
            throw ControlError(.notFound, "this control process runs one machine's store, not a fleet's (start it with --etcd)")
        }
        return reports
    }

    /// Whether this process answers: no question to the host (the agent's health
    /// check of control must not depend on the agent itself).
    public func health() -> Health {
        Health(status: "ok", pools: plane.cohorts.count, api: plane.apiAddress)
    }

    /// What the status page shows: the host and the recent rollouts.
    public func page() async throws(ControlError) -> (HostStatus, [(id: Int, status: RolloutStatus)]) {
        let status = try await plane.host.status()
        return (status, await offQueue { plane.recentRollouts(limit: 5) })
    }

    /// Every customer.
    public func customers() async throws(ControlError) -> CustomerList {
        CustomerList(customers: try await call { plane.listCustomers() }.map(CustomerInfo.init))
    }

    /// Adds a customer; the answer holds its token, shown this once.
    public func addCustomer(_ create: CreateCustomer, actor: String) async throws(ControlError) -> NewCustomer {
        let (customer, token) = try await call { plane.addCustomer(name: create.name, cohort: create.cohort, actor: actor) }
        return NewCustomer(name: customer.name, cohort: customer.cohort, token: token)
    }

    /// Gives a customer a new token; the answer holds it, shown this once.
    public func rotateToken(of name: String, actor: String) async throws(ControlError) -> NewCustomer {
        let (customer, token) = try await call { plane.rotateCustomerToken(name: name, actor: actor) }
        return NewCustomer(name: customer.name, cohort: customer.cohort, token: token)
    }

    /// Removes a customer with every script of theirs.
    public func removeCustomer(_ name: String, actor: String) async throws(ControlError) {
        try await call { plane.removeCustomer(name: name, actor: actor) }
    }

    /// Moves a customer to another cohort; the host warms the target pool first.
    public func moveCustomer(_ name: String, to cohort: String, actor: String) async throws(ControlError) -> CustomerMoved {
        try await call { plane.moveCustomer(name, to: cohort, actor: actor) }
    }

    /// Scripts of every customer, or of `customer` alone.
    public func allScripts(of customer: String?) async throws(ControlError) -> CustomerScriptList {
        let summaries = try await call { customer.map { plane.listScripts(customer: $0) } ?? plane.allScripts() }
        return CustomerScriptList(scripts: summaries.map { ScriptInfo($0, showingCustomer: true) })
    }

    /// Uploads a script for `customer` as the operator.
    public func putScript(for customer: String, name: String, source: Data, live: Bool = true, actor: String) async throws(ControlError) -> UploadAnswer {
        let owner = try await call { plane.customer(named: customer) }
        return try await putScript(owner, name: name, source: source, live: live, actor: actor)
    }

    /// Releases a quarantined script (the host keeps quarantines).
    public func releaseQuarantine(of customer: String, name: String) async throws(ControlError) -> Released {
        try await plane.host.releaseQuarantine(customer: customer, name: name)
    }

    /// The last 50 rollouts.
    public func rollouts() async throws(ControlError) -> RolloutList {
        RolloutList(rollouts: try await call { plane.rolloutSummaries() })
    }

    /// Validates an artifact and starts its rollout.
    public func startRollout(_ start: StartRollout, actor: String) async throws(ControlError) -> RolloutCreated {
        RolloutCreated(id: try await plane.startRollout(kind: start.kind, content: start.content, actor: actor).get())
    }

    /// A rollout's stages, gate numbers and decisions.
    public func rollout(_ id: Int) async throws(ControlError) -> RolloutStatus {
        try await call { plane.rolloutStatus(id: id) }
    }

    /// Pauses, resumes, aborts or promotes a rollout.
    public func operate(rollout id: Int, _ command: RolloutCommand, actor: String) async throws(ControlError) -> RolloutStatus {
        guard let driverCommand = RolloutDriver.Command(rawValue: command.rawValue) else {
            throw ControlError(.invalid, "unknown rollout command '\(command.rawValue)'")
        }
        return try await call { plane.operate(rollout: id, command: driverCommand, actor: actor) }
    }

    /// The commands a running rollout takes.
    public enum RolloutCommand: String, Sendable, CaseIterable {
        /// Hold at the current stage.
        case pause
        /// Bake the current stage again.
        case resume
        /// Every worker that got it goes back.
        case abort
        /// Pass the current stage now.
        case promote
    }

    /// Runs a blocking control-plane call off the cooperative threads and unwraps it.
    private func call<T: Sendable>(_ work: @escaping @Sendable () -> Result<T, ControlError>) async throws(ControlError) -> T {
        try await offQueue(work).get()
    }
}

/// The host's own operations (served on `admin.sock`): status, break glass, pool
/// scale, script logs. Typed like `ControlOperations`, and like them free of HTTP.
public struct HostOperations: Sendable {
    let supervisor: Supervisor

    /// Operations on `supervisor`.
    public init(supervisor: Supervisor) {
        self.supervisor = supervisor
    }

    /// The host at a glance.
    public func status() -> HostStatus {
        supervisor.currentStatus()
    }

    /// The freeze, the pins and the rollouts running.
    public func breakGlass() async throws(ControlError) -> BreakGlass.Status {
        try await offQueue { supervisor.breakGlassStatus() }.get()
    }

    /// Sets or clears the freeze.
    public func setFrozen(_ frozen: Bool, actor: String) async throws(ControlError) -> BreakGlass.Status {
        try await offQueue { supervisor.setFrozen(frozen, actor: actor) }.get()
    }

    /// What a break-glass rollback would pin where.
    public func plan(_ rollback: BreakGlassRollback) async throws(ControlError) -> BreakGlass.RollbackPlan {
        try await offQueue {
            supervisor.rollbackPlan(kind: rollback.kind, to: rollback.version, allowRejected: rollback.allowRejected ?? false)
        }.get()
    }

    /// Pins every pool to a version and aborts that kind's rollout.
    public func rollback(_ rollback: BreakGlassRollback, actor: String) async throws(ControlError) -> BreakGlass.Status {
        try await offQueue {
            supervisor.breakGlassRollback(kind: rollback.kind, to: rollback.version, allowRejected: rollback.allowRejected ?? false, actor: actor)
        }.get()
    }

    /// Releases a pin.
    public func unpin(_ kind: ArtifactKind, actor: String) async throws(ControlError) -> BreakGlass.Status {
        try await offQueue { supervisor.unpin(kind: kind, actor: actor) }.get()
    }

    /// Sets a pool's worker count.
    public func scale(pool: String, workers: Int) async throws(ControlError) -> PoolScaled {
        try await offQueue { supervisor.scale(pool: pool, workers: workers) }.get()
    }

    /// Releases a quarantined script on this host.
    public func releaseQuarantine(of customer: String, name: String) async throws(ControlError) -> Released {
        try await offQueue { supervisor.releaseQuarantine(customer: customer, name: name) }.get()
        return Released(released: "\(customer)/\(name)")
    }

    /// The host's metrics, as Prometheus text.
    public func metricsText() async -> String {
        await offQueue { MetricsText.render(supervisor.metricsSnapshot()) }
    }

    /// A script's recent log lines on this host.
    public func logs(of customer: String, name: String) async throws(ControlError) -> LogLines {
        LogLines(lines: try await offQueue { supervisor.scriptLogLines(customer: customer, name: name) }.get())
    }
}
