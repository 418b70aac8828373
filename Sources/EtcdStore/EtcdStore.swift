import BulkheadCore
import Dispatch
import Etcd
import Foundation
import Store
import Synchronization

// MARK: - etcd key layout
//
// Every key is under the store's prefix (`--etcd-prefix`, default `/bulkhead/`).
// Values are JSON objects (keys sorted) unless said otherwise; times are ISO 8601
// with milliseconds; numbers in keys are zero-padded so that key order is number
// order.
//
//     customer/NAME                       {"cohort", "createdAt", "name", "tokenHash"}
//     token/HASH                          {"customer"}: the customer of an API token hash
//     script/CUSTOMER/NAME                the script's head: {"activeVersion", "latestVersion",
//                                         "sha256", "size" (of the active version), "deleted",
//                                         "quarantined", "quarantineReason", "createdAt", "updatedAt",
//                                         "split" while a deployment is unfinished: {"deployment",
//                                         "version", "sha256" (of the candidate), "percent", "keyHeader"}}
//     scriptversion/CUSTOMER/NAME/%010d   one version: {"version", "sha256", "size", "createdAt", "createdBy"}
//     blob/SHA256/meta                    {"chunkBytes", "chunks", "sha256", "size"}
//     blob/SHA256/c/%05d                  the content's bytes, raw, in chunks of at most chunkBytes
//     artifact/KIND/latest                {"version"}: the highest version of KIND
//     artifact/KIND/v/%010d               one version: {"version", "sha256", "size", "createdAt", "createdBy"}
//     rollout/next                        {"next"}: the id the next rollout takes
//     rollout/r/%010d                     {"id", "kind", "version", "fromVersion", "status", "finished",
//                                         "createdAt", "updatedAt", "createdBy"}
//     rollout/state/%010d                 the rollout engine's state, raw bytes as given
//     rollout/running/KIND                {"id"}: the unfinished rollout of KIND, absent when none
//     deployment/next                     {"next"}: the id the next script deployment takes
//     deployment/d/%010d                  {"id", "customer", "name", "version", "fromVersion", "keyHeader",
//                                         "percent", "status", "finished", "createdAt", "updatedAt", "createdBy"}
//     deployment/state/%010d              the deployment engine's state, raw bytes as given
//     deployment/running/CUSTOMER/NAME    {"id"}: the script's unfinished deployment, absent when none
//     deployment/script/CUSTOMER/NAME/%010d  {"id"}: one deployment of the script (its listing)
//     setting/KEY                         {"updatedAt", "value"}
//     host/NAME                           a host agent's presence, on its lease: {"group", "name", "pid",
//                                         "reportTokenHash", "updatedAt"} (written by the host only,
//                                         once per lease)
//     driver/leader                       the driver's leader, on its lease: {"api", "machine", "pid",
//                                         "startedAt"} (`ControlListing`)
//     session/SHA256                      an operator session, on its lease: {"actor", "openedAt"}
//     audit/next                          {"next"}: the id the next audit event takes
//     audit/e/%016d                       {"action", "actor", "at", "detailBytes", "id", "subject",
//                                         "detail": the event's detail JSON as given, last}
//
// Script heads and versions are under different prefixes so that listing a
// customer's scripts reads the heads only, never every version.
//
// Sources and artifact contents are stored once per content (by SHA-256) and
// written in chunks *before* the transaction that references them; that
// transaction creates (or rewrites) `blob/SHA256/meta`, and compares the chunks'
// revisions (a new blob) or the meta's (a known one). So a meta exists only with all
// its chunks, and any transaction that starts to reference a blob changes its meta:
// garbage collection deletes a blob only while its meta is still as it was when no
// version referenced it.
//
// Version numbers, rollout and deployment ids and audit ids come from the head and
// counter keys above: every write is one transaction that compares the mod revision
// of every key it read (counters included) with what it read, and writes the change
// and its audit event together. A lost race reads again and retries (bounded). So
// numbers are dense and unique however many control processes write at once.
//
// The change feed of the SQLite store has no copy here: the etcd revision is the
// feed (a host agent watches the prefix). A deployment's split is in its script's
// head, so a change of the split is a change of the script, as in SQLite's feed;
// the `deployment/` keys carry nothing for a host.

/// The control store on etcd, for a fleet: what ``SQLiteStore`` keeps on one machine,
/// with the same errors, audit events and semantics, under a key prefix of an etcd
/// v3 cluster (layout above, and in README.md).
///
/// - Threads: the protocol is synchronous and the etcd client is async. Each call
///   runs its etcd work in a `Task` and blocks the calling thread on a semaphore
///   until it ends (``blocking(_:)``). **Never call it from a Swift-concurrency
///   thread** (an `async` function, an actor): blocking the cooperative pool can
///   starve the very task it waits for. bulkhead's control plane calls the store from
///   its own dispatch threads; tests hop to one (`DispatchQueue`).
/// - Writes of one store are serialized by a lock (as SQLite's single writer
///   connection): only writers in other processes race, and they settle it with
///   compares (see the layout notes).
/// - Durability: a call that returned was committed by etcd's quorum.
/// - Unreachable etcd (no member answers, no leader): a ``StoreError`` of kind
///   ``StoreError/Kind/unreachable`` within the client's failover timeout, which the
///   API answers `503 control-plane-unavailable`. A write whose answer was lost may
///   have been applied; the error says so.
public final class EtcdStore: BulkheadStore {
    /// The etcd client (shared: the store does not shut it down).
    public let client: EtcdClient
    /// The key prefix, ending in `/`.
    public let prefix: String
    /// Settings.
    public let configuration: EtcdStoreConfiguration
    /// Where the store is, for error messages: `etcd http://… under /bulkhead/`.
    public let location: String

    /// Serializes this store's writes (see the type's notes).
    private let writeLock = NSLock()

    private let lostRaces = Mutex(0)

    /// How many write transactions of this store found something they read changed
    /// by another writer, and were tried again: a measure of contention between
    /// control processes.
    public var retriedWrites: Int { lostRaces.withLock { $0 } }

    /// A store under `prefix` (a missing trailing `/` is added) of the cluster `client` talks to.
    ///
    /// Throws ``StoreError/Kind/invalid`` for an empty prefix or a bad configuration.
    /// Nothing is read or written: an empty prefix is an empty store.
    public init(client: EtcdClient, prefix: String = "/bulkhead/", configuration: EtcdStoreConfiguration = .init()) throws {
        guard !prefix.isEmpty else { throw StoreError.invalidArgument("the etcd prefix of the store must not be empty") }
        guard configuration.maximumContentBytes >= 1 else {
            throw StoreError.invalidArgument("store configuration: maximumContentBytes must be 1 or more")
        }
        // etcd refuses a request above 1.5 MiB; a chunk's key and the JSON around it
        // must fit beside it.
        guard (1...(1024 * 1024 + 256 * 1024)).contains(configuration.chunkBytes) else {
            throw StoreError.invalidArgument("store configuration: chunkBytes must be 1 to 1310720 (1.25 MiB)")
        }
        guard configuration.maximumAttempts >= 1 else {
            throw StoreError.invalidArgument("store configuration: maximumAttempts must be 1 or more")
        }
        self.client = client
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
        self.configuration = configuration
        let endpoints = client.configuration.endpoints.map(\.absoluteString).joined(separator: ",")
        self.location = "etcd \(endpoints) under \(self.prefix)"
    }

    // MARK: - Blocking bridge

    /// Runs `body` in a new detached `Task` and blocks the calling thread until it ends.
    ///
    /// Must not be called from a Swift-concurrency thread (see the type's notes).
    /// It does not time out by itself: every etcd call inside is bounded by the
    /// client's timeouts (connect, request, failover), so `body` ends.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome<T>()
        // Detached: a plain `Task` started from an actor-isolated caller would run on
        // that actor, which this thread blocks below.
        Task.detached {
            let result: Result<T, any Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            outcome.value.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return outcome.value.withLock { $0 } ?? .failure(CancellationError())
    }

    private final class Outcome<T: Sendable>: Sendable {
        let value = Mutex<Result<T, any Error>?>(nil)
    }

    /// Runs a read; a revision compacted under a multi-key read is read again.
    func read<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (Reader) async throws -> T) throws -> T {
        let outcome = Self.blocking { [self] in
            var attempt = 0
            while true {
                attempt += 1
                do {
                    return try await body(Reader(store: self))
                } catch EtcdError.compacted where attempt < 3 {
                    continue
                }
            }
        }
        return try outcome.mapError { translate($0, operation) }.get()
    }

    /// Runs one write: `body` reads through its ``Attempt`` and records the writes;
    /// they are committed as one transaction conditioned on everything read. A lost
    /// race runs `body` again, up to ``EtcdStoreConfiguration/maximumAttempts`` times.
    ///
    /// A ``StoreError`` thrown by `body` (not found, conflict) ends the write with
    /// nothing written.
    func write<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (Attempt) async throws -> T) throws -> T {
        // Behind a write that waits out an unreachable etcd, the next ones would queue
        // for as long each (and hold a thread each): a write that cannot take the lock
        // within one call's worst case gives up as unreachable.
        let timeouts = client.configuration.timeouts
        let patience = timeouts.failover + timeouts.request + timeouts.connect
        guard writeLock.lock(before: Date().addingTimeInterval(Self.seconds(patience))) else {
            throw StoreError.remoteUnreachable(
                store: location, operation: operation,
                detail: "waited \(patience) behind this process's other writes, which etcd does not answer")
        }
        defer { writeLock.unlock() }
        let limit = configuration.maximumAttempts
        let outcome = Self.blocking { [self] in
            for attempt in 1...limit {
                let transaction = Attempt(store: self)
                let fence = configuration.fence?()
                if let fence { transaction.require(fence) }
                let result = try await body(transaction)
                if try await transaction.commit() { return result }
                // A fence that no longer holds will not hold on the next try either.
                if let fence, try await !client.txn(compare: [fence], success: []).succeeded {
                    throw StoreError.fenced(store: location, operation: operation)
                }
                lostRaces.withLock { $0 += 1 }
                // Another writer got there first: back off a little (jittered, so two
                // processes do not collide again in step) and read again.
                let pause = Int.random(in: 1...min(2 * attempt, 40))
                try? await Task.sleep(for: .milliseconds(pause))
            }
            throw StoreError.contended(store: location, operation: operation, attempts: limit)
        }
        return try outcome.mapError { translate($0, operation) }.get()
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// A ``StoreError`` for any error out of etcd or the store's own code.
    func translate(_ error: any Error, _ operation: String) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as EtcdError:
            switch error {
            case .unavailable, .noLeader, .timeout:
                return .remoteUnreachable(store: location, operation: operation, detail: error.description)
            default:
                return .remoteFailed(store: location, operation: operation, detail: error.description)
            }
        default:
            return .remoteFailed(store: location, operation: operation, detail: "\(error)")
        }
    }

    // MARK: - Keys and values

    /// The full key of `relative` (a key of the layout).
    func key(_ relative: String) -> String {
        prefix + relative
    }

    /// `number` zero-padded to `width` digits, so that key order is number order.
    static func padded(_ number: Int, _ width: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// Times are stored as ISO 8601 in UTC with milliseconds (`2026-12-07T13:37:48.123Z`),
    /// built from whole milliseconds by hand: a `Date` read back is then exactly the
    /// `Date` that ``now()`` returned, with no floating-point rounding in between.
    static func milliseconds(_ date: Date) -> Int {
        Int((date.timeIntervalSince1970 * 1000).rounded())
    }

    static func date(milliseconds: Int) -> Date {
        let (seconds, rest) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        let (wholeSeconds, fraction) = rest < 0 ? (seconds - 1, rest + 1000) : (seconds, rest)
        return Date(timeIntervalSince1970: Double(wholeSeconds) + Double(fraction) / 1000)
    }

    static func format(_ date: Date) -> String {
        let total = milliseconds(date)
        let (seconds, rest) = total.quotientAndRemainder(dividingBy: 1000)
        let (wholeSeconds, fraction) = rest < 0 ? (seconds - 1, rest + 1000) : (seconds, rest)
        var text = Date(timeIntervalSince1970: Double(wholeSeconds)).formatted(Date.ISO8601FormatStyle())
        guard text.hasSuffix("Z") else { return text }
        text.removeLast()
        return text + "." + padded(fraction, 3) + "Z"
    }

    static func parse(_ text: String) throws -> Date {
        guard text.hasSuffix("Z"), let dot = text.lastIndex(of: "."),
            let fraction = Int(text[text.index(after: dot)..<text.index(before: text.endIndex)]),
            text.distance(from: dot, to: text.endIndex) == 5
        else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "\(text.debugDescription) is not a time as YYYY-MM-DDTHH:MM:SS.mmmZ"))
        }
        let seconds = try Date.ISO8601FormatStyle().parse(String(text[..<dot]) + "Z")
        return date(milliseconds: Int(seconds.timeIntervalSince1970.rounded()) * 1000 + fraction)
    }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(format(date))
        }
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            try parse(try decoder.singleValueContainer().decode(String.self))
        }
        return decoder
    }

    /// A value's JSON.
    func encode(_ value: some Encodable) throws -> [UInt8] {
        Array(try Self.encoder().encode(value))
    }

    /// A stored value; a value that does not decode is a damaged store, named by its key.
    func decode<T: Decodable>(_ type: T.Type, _ kv: KeyValue) throws -> T {
        do {
            return try Self.decoder().decode(type, from: Data(kv.value))
        } catch {
            throw StoreError.remoteUnreadable(store: location, key: kv.keyString, detail: "\(error)")
        }
    }

    /// The current time as stored: rounded to the millisecond, so that what a write
    /// returns equals what a read gives back.
    func now() -> Date {
        Self.date(milliseconds: Self.milliseconds(configuration.clock()))
    }

    // MARK: - Argument checks

    func checkScript(_ customer: String, _ name: String) throws {
        try StoreArguments.checkName("customer", customer)
        try StoreArguments.checkName("script", name)
    }

    func checkContentSize(_ what: String, _ content: String) throws {
        try StoreArguments.checkContentSize(what, content, maximum: configuration.maximumContentBytes)
    }
}

// MARK: - Reads

/// The reads of one store call: the first read fixes the revision, every later read
/// is made at it, so that a call sees the store as it was at one moment (as an SQLite
/// read transaction does).
final class Reader: Sendable {
    let store: EtcdStore
    private let pinned = Mutex<Int64>(0)

    init(store: EtcdStore) {
        self.store = store
    }

    /// A reader whose every read is made at `revision` (a host agent reads the rows
    /// a watch named at the revision the watch delivered them).
    init(store: EtcdStore, revision: Int64) {
        self.store = store
        pinned.withLock { $0 = revision }
    }

    /// The revision read at (0 before the first read).
    var revision: Int64 { pinned.withLock { $0 } }

    private func pin(_ header: ResponseHeader) {
        pinned.withLock { if $0 == 0 { $0 = header.revision } }
    }

    /// The key `relative`, or nil.
    func get(_ relative: String) async throws -> KeyValue? {
        let answer = try await store.client.get(store.key(relative), revision: revision)
        pin(answer.header)
        return answer.first
    }

    /// The value at `relative` decoded, or nil when the key is absent.
    func value<T: Decodable>(_ relative: String, as type: T.Type) async throws -> T? {
        guard let kv = try await get(relative) else { return nil }
        return try store.decode(type, kv)
    }

    /// Every key starting with `relative`, in key order, `pageSize` keys per call.
    func list(_ relative: String, pageSize: Int64 = 500) async throws -> [KeyValue] {
        let answer = try await store.client.rangeAll(prefix: store.key(relative), pageSize: pageSize, revision: revision)
        pin(answer.header)
        return answer.kvs
    }

    /// The keys in `[from, to)` (relative), in key order, at most `limit` (0: all).
    func range(from: String, to: String, limit: Int64 = 0) async throws -> [KeyValue] {
        let answer = try await store.client.range(
            from: store.key(from), to: store.key(to), revision: revision, limit: limit)
        pin(answer.header)
        return answer.kvs
    }
}

// MARK: - Writes

/// One try at a write: what it read (each read adds a compare of the key's mod
/// revision) and what it will write. ``commit()`` sends it as one transaction.
final class Attempt: Sendable {
    let store: EtcdStore
    private let state = Mutex(State())

    private struct State {
        var compares: [Compare] = []
        var operations: [TxnOp] = []
        /// Keys read (full keys), with what was there.
        var read: [String: KeyValue?] = [:]
        /// Keys written, to refuse a second write of one key (etcd would refuse the transaction).
        var written: Set<String> = []
    }

    init(store: EtcdStore) {
        self.store = store
    }

    /// Reads the keys `relatives` (one round trip, at one revision) and makes the
    /// transaction conditional on each being unchanged at commit. A key read before
    /// in this attempt is not read again.
    @discardableResult
    func read(_ relatives: [String]) async throws -> [KeyValue?] {
        let keys = relatives.map(store.key)
        let missing = state.withLock { state in keys.filter { state.read[$0] == nil } }
        if !missing.isEmpty {
            let unique = Array(Set(missing)).sorted()
            let answer = try await store.client.txn(compare: [], success: unique.map { TxnOp.get($0) })
            state.withLock { state in
                for (key, response) in zip(unique, answer.responses) {
                    let kv = response.range?.first
                    state.read[key] = .some(kv)
                    state.compares.append(.modRevision(key, .equal, kv?.modRevision ?? 0))
                }
            }
        }
        return state.withLock { state in keys.map { state.read[$0] ?? nil } }
    }

    /// The key `relative` as read in this attempt (reads it when it was not).
    func get(_ relative: String) async throws -> KeyValue? {
        try await read([relative])[0]
    }

    /// The value at `relative` decoded, or nil when absent.
    func value<T: Decodable>(_ relative: String, as type: T.Type) async throws -> T? {
        guard let kv = try await get(relative) else { return nil }
        return try store.decode(type, kv)
    }

    /// Adds a condition of the transaction.
    func require(_ compare: Compare) {
        state.withLock { $0.compares.append(compare) }
    }

    /// Writes `value`'s JSON at `relative`.
    func put(_ relative: String, _ value: some Encodable) throws {
        try putBytes(relative, try store.encode(value))
    }

    /// Writes `bytes` at `relative` as they are.
    func putBytes(_ relative: String, _ bytes: [UInt8]) throws {
        let key = store.key(relative)
        try claim(key)
        state.withLock { $0.operations.append(.put(key, bytes)) }
    }

    /// Deletes `relative`.
    func delete(_ relative: String) throws {
        let key = store.key(relative)
        try claim(key)
        state.withLock { $0.operations.append(.delete(key)) }
    }

    /// Deletes every key under `relative` (which ends with `/`, so `acme/` leaves
    /// `acme-b/` alone), as one operation whatever the count. Keys under it must not
    /// also be written by this attempt: etcd refuses a put and a delete of one key in
    /// a transaction.
    func deletePrefix(_ relative: String) throws {
        let key = store.key(relative)
        guard key.hasSuffix("/") else {
            throw StoreError.invalidArgument("internal: a prefix delete of \(key) would reach keys beside it")
        }
        try claim(key)
        state.withLock { $0.operations.append(.delete(prefix: key)) }
    }

    private func claim(_ key: String) throws {
        let fresh = state.withLock { $0.written.insert(key).inserted }
        guard fresh else {
            throw StoreError.invalidArgument("internal: one write would change \(key) twice")
        }
    }

    /// Appends an audit event to this write: takes the next id from `audit/next`.
    func audit(at: Date, actor: String, action: AuditAction, subject: String, detail: AuditDetail) async throws -> AuditEvent {
        try await audit(at: at, actor: actor, action: action, subject: subject, detailJSON: try detail.json())
    }

    /// Appends an audit event whose detail is already a JSON text.
    func audit(at: Date, actor: String, action: AuditAction, subject: String, detailJSON: String) async throws -> AuditEvent {
        let next = try await value(EtcdStore.Keys.auditNext, as: EtcdStore.Counter.self)?.next ?? 1
        let event = AuditEvent(id: next, at: at, actor: actor, action: action, subject: subject, detail: detailJSON)
        try putBytes(EtcdStore.Keys.auditEvent(next), try store.encodeAudit(event))
        try put(EtcdStore.Keys.auditNext, EtcdStore.Counter(next: next + 1))
        return event
    }

    /// Sends the transaction: true when it was applied, false when a compare failed
    /// (something read changed). An attempt that writes nothing commits at once.
    func commit() async throws -> Bool {
        let (compares, operations) = state.withLock { ($0.compares, $0.operations) }
        if operations.isEmpty { return true }
        return try await store.client.txn(compare: compares, success: operations).succeeded
    }
}

// MARK: - ControlStore

extension EtcdStore: ControlStore {
    /// etcd's revision now: every change to the store (to any key of the cluster)
    /// raises it, and host agents that watch the prefix apply changes by it.
    public func latestRevision() throws -> Int {
        try read("read the store's revision") { reader in
            _ = try await reader.get(Keys.auditNext)
            return Int(reader.revision)
        }
    }
}
