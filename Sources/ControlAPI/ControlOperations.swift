import BulkheadCore
import Foundation
import Rollout
import Store
import Supervisor

/// The control plane's operations, one typed call each: typed arguments, the API's
/// Codable bodies as results, `ControlError` as the only failure. The router maps
/// requests to these calls and errors to statuses; nothing here knows HTTP, so the
/// same calls move with the control plane into its own process.
public struct ControlOperations: Sendable {
    let supervisor: Supervisor

    /// Operations on `supervisor`.
    public init(supervisor: Supervisor) {
        self.supervisor = supervisor
    }

    // MARK: A customer's own scripts

    /// Validates, stores and ships a new version of `customer`'s script `name`.
    public func putScript(_ customer: Customer, name: String, source: Data, actor: String) async throws(ControlError) -> UploadAnswer {
        UploadAnswer(try await call { supervisor.putScript(customer: customer, name: name, source: source, actor: actor) })
    }

    /// `customer`'s scripts.
    public func scripts(of customer: String) async throws(ControlError) -> ScriptList {
        ScriptList(scripts: try await call { supervisor.listScripts(customer: customer) }.map(ScriptInfo.init))
    }

    /// One script with its active source.
    public func script(of customer: String, name: String) async throws(ControlError) -> ScriptDetail {
        let (summary, source) = try await call { supervisor.script(customer: customer, name: name) }
        return ScriptDetail(script: ScriptInfo(summary), source: source)
    }

    /// Every stored version of a script.
    public func versions(of customer: String, name: String) async throws(ControlError) -> VersionList {
        VersionList(versions: try await call { supervisor.scriptVersions(customer: customer, name: name) }.map(VersionInfo.init))
    }

    /// A script's recent log lines (kept by the host that runs it).
    public func logs(of customer: String, name: String) async throws(ControlError) -> LogLines {
        LogLines(lines: try await call { supervisor.scriptLogLines(customer: customer, name: name) })
    }

    /// Makes an earlier version active: `version`, or the one before the active one.
    public func rollbackScript(of customer: String, name: String, to version: Int?, actor: String) async throws(ControlError) -> ScriptInfo {
        ScriptInfo(try await call { supervisor.rollbackScript(customer: customer, name: name, to: version, actor: actor) })
    }

    /// Deletes a script and every version of it.
    public func deleteScript(of customer: String, name: String, actor: String) async throws(ControlError) {
        try await call { supervisor.deleteScript(customer: customer, name: name, actor: actor) }
    }

    // MARK: Operators

    /// The host at a glance.
    public func status() -> HostStatus {
        supervisor.currentStatus()
    }

    /// Every customer.
    public func customers() async throws(ControlError) -> CustomerList {
        CustomerList(customers: try await call { supervisor.listCustomers() }.map(CustomerInfo.init))
    }

    /// Adds a customer; the answer holds its token, shown this once.
    public func addCustomer(_ create: CreateCustomer, actor: String) async throws(ControlError) -> NewCustomer {
        let (customer, token) = try await call { supervisor.addCustomer(name: create.name, cohort: create.cohort, actor: actor) }
        return NewCustomer(name: customer.name, cohort: customer.cohort, token: token)
    }

    /// Moves a customer to another cohort, warm on the target pool first.
    public func moveCustomer(_ name: String, to cohort: String, actor: String) async throws(ControlError) -> CustomerMoved {
        try await call { supervisor.moveCustomer(name, to: cohort, actor: actor) }
    }

    /// Scripts of every customer, or of `customer` alone.
    public func allScripts(of customer: String?) async throws(ControlError) -> CustomerScriptList {
        let summaries = try await call { customer.map { supervisor.listScripts(customer: $0) } ?? supervisor.allScripts() }
        return CustomerScriptList(scripts: summaries.map(CustomerScriptInfo.init))
    }

    /// Uploads a script for `customer` as the operator.
    public func putScript(for customer: String, name: String, source: Data, actor: String) async throws(ControlError) -> UploadAnswer {
        let owner = try await call { supervisor.customer(named: customer) }
        return try await putScript(owner, name: name, source: source, actor: actor)
    }

    /// Releases a quarantined script.
    public func releaseQuarantine(of customer: String, name: String) async throws(ControlError) -> Released {
        try await call { supervisor.releaseQuarantine(customer: customer, name: name) }
        return Released(released: "\(customer)/\(name)")
    }

    /// The last 50 rollouts.
    public func rollouts() async throws(ControlError) -> RolloutList {
        RolloutList(rollouts: try await call { supervisor.rolloutSummaries() })
    }

    /// Validates an artifact and starts its rollout.
    public func startRollout(_ start: StartRollout, actor: String) async throws(ControlError) -> RolloutCreated {
        RolloutCreated(id: try await call { supervisor.startRollout(kind: start.kind, content: start.content, actor: actor) })
    }

    /// A rollout's stages, gate numbers and decisions.
    public func rollout(_ id: Int) async throws(ControlError) -> RolloutStatus {
        try await call { supervisor.rolloutStatus(id: id) }
    }

    /// Pauses, resumes, aborts or promotes a rollout.
    public func operate(rollout id: Int, _ command: RolloutCommand, actor: String) async throws(ControlError) -> RolloutStatus {
        try await call { supervisor.operate(rollout: id, command: command.rawValue, actor: actor) }
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

    /// Runs a blocking supervisor call off the cooperative threads and unwraps it.
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

    /// A script's recent log lines on this host.
    public func logs(of customer: String, name: String) async throws(ControlError) -> LogLines {
        LogLines(lines: try await offQueue { supervisor.scriptLogLines(customer: customer, name: name) }.get())
    }
}
