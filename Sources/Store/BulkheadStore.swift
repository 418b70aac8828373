/// Everything bulkhead keeps durably: customers, scripts, platform artifacts,
/// rollouts, host settings, last known good cohorts, and the audit log.
///
/// A composition of small protocols so that a part of bulkhead can ask for only what
/// it uses (the API for ``CustomerStore`` and ``ScriptStore``, the rollout engine for
/// ``RolloutStore``), and so that another backend (PostgreSQL, etcd) is an added type,
/// not a rewrite. ``SQLiteStore`` is the embedded default.
///
/// Contract for every backend:
/// - Methods are synchronous and may block on I/O; call them off latency-sensitive
///   threads (the supervisor calls them from its own queue). They are safe to call
///   from several threads at once.
/// - A method that returned has made its change durable: an acknowledged upload
///   survives the process being killed right after.
/// - Every change writes its ``AuditEvent`` in the same transaction as the change:
///   both happen or neither does. A failed call changes nothing.
/// - Names of customers, scripts and pools follow `ResourceName`; a bad one is
///   refused with a ``StoreError`` of kind ``StoreError/Kind/invalid``.
/// - Script queries are scoped by customer: no method returns another customer's
///   script for a customer-scoped query.
/// - `actor` is who made the change, as the audit log shows it (`customer:acme`,
///   `admin`, `rollout`, `break-glass`, …); it must not be empty.
/// - Errors are ``StoreError``s.
public protocol BulkheadStore: CustomerStore, ScriptStore, DeploymentStore, ArtifactStore, RolloutStore, SettingsStore, AuditLog {}
