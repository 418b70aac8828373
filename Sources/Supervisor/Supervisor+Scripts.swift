#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store

/// The operations the control API and the admin socket share. Each blocks (a script
/// check takes up to the cohort's wall limit): call them off the supervisor queue.
extension Supervisor {
    /// Uploads per second a customer may make, and the burst it may save up.
    static let uploadRate = 5.0
    static let uploadBurst = 20.0

    // MARK: - Customers

    /// The customer a bearer token belongs to. The store finds the row by the token's
    /// hash; the final comparison is constant-time.
    public func authenticate(token: String) -> Customer? {
        let hash = TokenHash.of(token: token)
        guard let customer = try? store.customer(withTokenHash: hash), constantTimeEquals(customer.tokenHash, hash) else {
            return nil
        }
        return customer
    }

    /// Whether `token` is the admin token (constant-time).
    public func isAdminToken(_ token: String) -> Bool {
        !adminToken.isEmpty && constantTimeEquals(token, adminToken)
    }

    /// Adds a customer to a cohort; returns it with its new API token (shown once).
    public func addCustomer(name: String, cohort: String, actor: String) -> Result<(Customer, String), ControlError> {
        guard ResourceName.isValid(name) else {
            return .failure(ControlError(.invalidName, "'\(name)' is not a valid customer name (\(ResourceName.rule))"))
        }
        guard queue.sync(execute: { pools[cohort] != nil }) else {
            let known = queue.sync { pools.keys.sorted().joined(separator: ", ") }
            return .failure(ControlError(.noCohort, "no cohort '\(cohort)'; cohorts: \(known)"))
        }
        let token = Self.newToken(prefix: "bht")
        do {
            let customer = try store.addCustomer(name: name, cohort: cohort, tokenHash: TokenHash.of(token: token), actor: actor)
            nudgeFeed()
            return .success((customer, token))
        } catch let error as StoreError where error.kind == .conflict {
            return .failure(ControlError(.exists, "customer '\(name)' already exists"))
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Every customer.
    public func listCustomers() -> Result<[Customer], ControlError> {
        Result { try store.customers() }.mapError(Self.storeFailure)
    }

    // MARK: - Scripts

    /// Validates and stores a new version of a script, then ships it to every worker
    /// of the customer's pool. Nothing is stored when validation fails.
    public func putScript(customer: Customer, name: String, source: Data, actor: String) -> Result<ScriptVersion, ControlError> {
        guard ResourceName.isValid(name) else {
            return .failure(ControlError(.invalidName, "'\(name)' is not a valid script name (\(ResourceName.rule))"))
        }
        guard let limits = queue.sync(execute: { pools[customer.cohort]?.cohort.limits }) else {
            return .failure(ControlError(.noPool, "the \(customer.cohort) pool is not running"))
        }
        guard source.count <= limits.maxScriptBytes else {
            return .failure(ControlError(.tooLarge, "the script is \(source.count) bytes; the \(customer.cohort) cohort allows \(limits.maxScriptBytes) (limits.max_script_kb = \(limits.maxScriptKB))"))
        }
        guard let text = String(validatingUTF8Data: source) else {
            return .failure(ControlError(.notUTF8, "the script is not UTF-8 text"))
        }
        guard takeUploadToken(customer: customer.name) else {
            return .failure(ControlError(.rateLimited, "more than \(Int(Self.uploadRate)) uploads per second; wait and retry"))
        }
        if let refusal = checker.check(name: name, source: text, limits: limits) {
            return .failure(refusal)
        }
        do {
            let version = try store.putScriptVersion(customer: customer.name, name: name, source: text, actor: actor)
            if (try? store.script(customer: customer.name, name: name))??.quarantined == true {
                _ = try store.setScriptQuarantined(customer: customer.name, name: name, quarantined: false, reason: nil, actor: actor)
            }
            forgetScriptFile(customer: customer.name, name: name)
            nudgeFeed()
            return .success(version)
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// A customer's scripts.
    public func listScripts(customer: String) -> Result<[ScriptSummary], ControlError> {
        Result { try store.scripts(ofCustomer: customer) }.mapError(Self.storeFailure)
    }

    /// One script with its active source.
    public func script(customer: String, name: String) -> Result<(ScriptSummary, String), ControlError> {
        do {
            guard let summary = try store.script(customer: customer, name: name) else { return .failure(.noSuchScript(name)) }
            let source = try store.scriptSource(customer: customer, name: name, version: nil)
            return .success((summary, source.source))
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Every version of a script.
    public func scriptVersions(customer: String, name: String) -> Result<[ScriptVersion], ControlError> {
        do {
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
            return .success(try store.scriptVersions(customer: customer, name: name))
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Makes an earlier version active (the previous one, or `version`) on every worker.
    public func rollbackScript(customer: String, name: String, to version: Int?, actor: String) -> Result<ScriptSummary, ControlError> {
        do {
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
            let summary = try store.rollbackScript(customer: customer, name: name, to: version, actor: actor)
            forgetScriptFile(customer: customer, name: name)
            nudgeFeed()
            return .success(summary)
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// Deletes a script: it stops being served.
    public func deleteScript(customer: String, name: String, actor: String) -> Result<Void, ControlError> {
        do {
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
            try store.deleteScript(customer: customer, name: name, actor: actor)
            forgetScriptFile(customer: customer, name: name)
            nudgeFeed()
            return .success(())
        } catch {
            return .failure(Self.storeFailure(error))
        }
    }

    /// The last lines of a script's log: its `log(...)` output and its errors.
    public func scriptLogLines(customer: String, name: String) -> Result<[String], ControlError> {
        do {
            guard try store.script(customer: customer, name: name) != nil else { return .failure(.noSuchScript(name)) }
        } catch {
            return .failure(Self.storeFailure(error))
        }
        return .success(queue.sync { scriptLogs["\(customer)/\(name)"] ?? [] })
    }

    /// Releases a quarantined script.
    public func releaseQuarantine(customer: String, name: String) -> Result<Void, ControlError> {
        queue.sync { unquarantine(customer: customer, script: name) }
            ? .success(())
            : .failure(ControlError(.notQuarantined, "\(customer)/\(name) is not quarantined"))
    }

    /// The host at a glance (thread-safe).
    public func currentStatus() -> HostStatus {
        queue.sync { status() }
    }

    /// Totals per pool for `/metrics` (thread-safe).
    public func metricsSnapshot() -> MetricsSnapshot {
        var snapshot = queue.sync {
            MetricsSnapshot(pools: pools.values.sorted { $0.cohort.order < $1.cohort.order }.map { pool in
                (pool.cohort.name, totals[pool.cohort.name] ?? PoolTotals(),
                 pool.slots.compactMap { $0 }.filter { $0.ready && !$0.exited }.count, pool.cohort.workers, pool.policy.isDegraded)
            })
        }
        let overrides = try? replica.overrides()
        snapshot.frozen = overrides?.isFrozen
        snapshot.pins = overrides.map(BreakGlass.pins) ?? [:]
        return snapshot
    }

    // MARK: - Helpers

    private func takeUploadToken(customer: String) -> Bool {
        queue.sync {
            let now = Self.now()
            var bucket = uploadBuckets[customer] ?? (Self.uploadBurst, now)
            bucket.tokens = min(Self.uploadBurst, bucket.tokens + (now - bucket.at) * Self.uploadRate)
            bucket.at = now
            guard bucket.tokens >= 1 else {
                uploadBuckets[customer] = bucket
                return false
            }
            bucket.tokens -= 1
            uploadBuckets[customer] = bucket
            return true
        }
    }

    static func storeFailure(_ error: any Error) -> ControlError { .fromStore(error) }
}

extension String {
    /// Decodes UTF-8, or nil when the bytes are not valid UTF-8.
    init?(validatingUTF8Data data: Data) {
        guard let text = String(data: data, encoding: .utf8) else { return nil }
        self = text
    }
}
