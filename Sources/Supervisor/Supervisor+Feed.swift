#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store

/// The control store could not be opened: the host serves from its replica, and
/// operations that need the control store fail with this until it opens.
struct ControlStoreUnavailable: Error, CustomStringConvertible {
    /// The control store's path.
    var path: String

    var description: String {
        "the control store \(path) is not open (unreadable, damaged or locked); the host serves from its replica meanwhile"
    }
}

/// Where the supervisor stands on the control store's change feed. Touched only on
/// the supervisor queue.
struct FeedFollower {
    /// What follows the control store's change feed (on one machine, a read-only
    /// connection to it), once it opened.
    var reader: (any ChangeFeedSource)?
    /// The revision the replica (and the catalog) reflect; nil before the first copy.
    var appliedRevision: Int?
    /// The newest revision the feed had at the last look.
    var latest = 0
    /// The source's change token at the last look that caught up (on one machine
    /// `PRAGMA data_version`): unchanged means no news.
    var dataVersion: Int?
    /// Script rows read from the control store since start.
    var scriptsRead = 0
    /// Script messages (`putScript`, `removeScript`) sent to workers since start.
    var scriptsPushed = 0
    /// Full copies made since start (a new replica, or one behind the feed's pruning).
    var fullCopies = 0
    /// The problem last logged, so a store that stays unreadable is logged once.
    var problem: String?
    /// When opening the control store (or the feed) was last tried, monotonic seconds.
    var lastOpenAttempt = -Double.infinity
    /// Ticks since the file's identity was last checked.
    var ticksSinceIdentityCheck = 0
    /// Whether a look at a remote source is in flight (off the queue).
    var reading = false
}

extension Supervisor {
    // MARK: - Opening

    /// Opens the control store (for the control side's writes) when it is not open,
    /// at most once a second; a failure is logged once and retried, and returned.
    @discardableResult
    func openControlStore() -> (any Error)? {
        guard configuration.localControlStore, controlStore.withLock({ $0 == nil }) else { return nil }
        do {
            let opened = try SQLiteStore(dataDirectory: configuration.data)
            controlStore.withLock { $0 = opened }
            logger.info("control store open", metadata: ["file": "\(opened.path)"])
            return nil
        } catch {
            noteFeedProblem("cannot open the control store; serving from the replica", error)
            return error
        }
    }

    /// The feed's reader, opened (or reopened, when the file was replaced) as needed.
    private func feedReader(now: Double) -> (any ChangeFeedSource)? {
        if let reader = replicaFeed.follower.reader {
            replicaFeed.follower.ticksSinceIdentityCheck += 1
            guard replicaFeed.follower.ticksSinceIdentityCheck >= 50 else { return reader }
            replicaFeed.follower.ticksSinceIdentityCheck = 0
            if reader.isCurrent { return reader }
            logger.warning("the control store was replaced; following the new one", metadata: ["store": "\(reader.location)"])
            reader.close()
            replicaFeed.follower.reader = nil
            replicaFeed.follower.dataVersion = nil
        }
        guard now - replicaFeed.follower.lastOpenAttempt >= 1 else { return nil }
        replicaFeed.follower.lastOpenAttempt = now
        openControlStore()
        do {
            let reader = try configuration.openFeed()
            replicaFeed.follower.reader = reader
            replicaFeed.follower.dataVersion = nil
            return reader
        } catch {
            noteFeedProblem("cannot follow the control store's change feed; serving from the replica", error)
            return nil
        }
    }

    private func noteFeedProblem(_ message: String, _ error: any Error) {
        let text = "\(message): \(error)"
        guard replicaFeed.follower.problem != text else { return }
        replicaFeed.follower.problem = text
        logger.error("\(message)", metadata: ["error": "\(error)"])
    }

    // MARK: - Following

    /// Brings the replica and the workers up to the control store's feed: on each
    /// tick, and when the control side nudges. Cheap when nothing changed (one
    /// `PRAGMA data_version`); reads only the rows the new changes name, applies
    /// them to the replica in one transaction with their revision, then sends workers
    /// only what changed. A busy or unreadable store is "no news" (logged once).
    ///
    /// A remote source (etcd) is read off the queue, one look at a time, and what it
    /// read is applied back on the queue: a slow or unreachable store never holds up
    /// the supervision of workers, only the news.
    func followFeed() {
        guard replica != nil, let reader = feedReader(now: Self.now()) else { return }
        let after = replicaFeed.follower.appliedRevision
        let known = replicaFeed.follower.dataVersion
        guard let remote = reader as? any RemoteChangeFeedSource else {
            take(Result { try Self.look(reader, after: after, known: known) })
            return
        }
        guard !replicaFeed.follower.reading else { return }
        replicaFeed.follower.reading = true
        DispatchQueue.global().async { [self] in
            let outcome = Result { try Self.look(remote, after: after, known: known) }
            queue.async { [self] in
                replicaFeed.follower.reading = false
                // A look that started from another revision, or from a source since
                // replaced, says nothing about where the replica stands now.
                guard replicaFeed.follower.appliedRevision == after, replicaFeed.follower.reader === remote else { return }
                take(outcome)
            }
        }
    }

    /// One look at the feed: the change token, and the changes after `after` when
    /// the token differs from `known` (nil: no news).
    private static func look(_ reader: any ChangeFeedSource, after: Int?, known: Int?) throws -> (token: Int, read: FeedRead?) {
        let token = try reader.changeToken()
        if token == known { return (token, nil) }
        return (token, try reader.update(after: after, limit: 10_000))
    }

    /// Applies what a look read: to the replica, the catalog, the workers and the stages.
    private func take(_ outcome: Result<(token: Int, read: FeedRead?), any Error>) {
        guard let replica else { return }
        do {
            let (version, looked) = try outcome.get()
            guard let read = looked else { return }
            replicaFeed.follower.latest = read.bounds.latest
            let update = read.update
            let caughtUp = update.revision >= read.bounds.latest || update.isFullCopy
            if !update.isFullCopy, update.revision == replicaFeed.follower.appliedRevision {
                if caughtUp { replicaFeed.follower.dataVersion = version }
                return
            }
            let lifted = try replica.apply(update, importQuarantines: replicaFeed.follower.appliedRevision == nil)
            replicaFeed.follower.appliedRevision = update.revision
            replicaFeed.follower.scriptsRead += read.scriptsRead
            if caughtUp { replicaFeed.follower.dataVersion = version }
            if replicaFeed.follower.problem != nil {
                replicaFeed.follower.problem = nil
                logger.info("following the control store's change feed again", metadata: ["revision": "\(update.revision)"])
            }
            if update.isFullCopy {
                replicaFeed.follower.fullCopies += 1
                logger.info("replica copied whole from the control store", metadata: [
                    "revision": "\(update.revision)", "scripts": "\(update.scripts.count)",
                ])
            }
            publish(update, lifted: lifted)
            applyStages(update)
        } catch {
            // Nothing applied: the replica's transaction rolled back whole, and the
            // next look starts from the same revision.
            replicaFeed.follower.dataVersion = nil
            noteFeedProblem("cannot read the control store's change feed; serving from the replica", error)
        }
    }

    /// Applies an update (already in the replica) to the catalog and tells workers.
    private func publish(_ update: ReplicaUpdate, lifted: [ScriptAddress]) {
        let before = replicaFeed.catalog
        for script in lifted {
            let key = script.description
            table.strikes[key] = nil
            if table.quarantined.remove(key) != nil, let cohort = before.assignments[script.customer], let pool = table.pools[cohort] {
                for worker in pool.allWorkers { worker.send(.quarantine(customer: script.customer, name: script.name, quarantined: false)) }
            }
        }
        if update.isFullCopy {
            replicaFeed.catalog = ScriptCatalog.from(
                customers: update.customers.map { (name: $0.key, cohort: $0.value) }, active: update.scripts.map(\.spec))
            if replicaFeed.catalog != before {
                publishCatalogChanges(from: before)
                writeRoutes()
            }
            return
        }
        var next = replicaFeed.catalog
        for (name, cohort) in update.customers { next.assign(customer: name, to: cohort) }
        for script in update.scripts { next.put(script.spec) }
        for script in update.removedScripts { next.remove(customer: script.customer, name: script.name) }
        for customer in update.removedCustomers { next.remove(customer: customer) }
        replicaFeed.catalog = next
        let moved = Set(update.customers.keys.filter { before.assignments[$0] != next.assignments[$0] })
        // A new customer is assigned at once; one that changes pools is warmed on
        // its new pool first (`beginMove`), and switched by `advanceMoves`.
        let added = Set(update.customers.keys.filter { before.assignments[$0] == nil })
        if !added.isEmpty {
            for pool in table.pools.values {
                for worker in pool.allWorkers { worker.send(.customers(assignments: next.assignments)) }
            }
            for customer in added.sorted() {
                guard let cohort = next.assignments[customer], let pool = table.pools[cohort] else { continue }
                for spec in (next.scripts[customer] ?? [:]).values.sorted(by: { $0.name < $1.name }) {
                    table.strikes["\(customer)/\(spec.name)"] = nil
                    send(.putScript(spec), to: pool)
                }
            }
        }
        for customer in moved.subtracting(added).sorted() {
            if let from = before.assignments[customer], let to = next.assignments[customer] {
                beginMove(customer, from: from, to: to, catalog: next, leaving: (before.scripts[customer] ?? [:]).keys.sorted())
            }
        }
        let removed = Set(update.removedCustomers.filter { before.assignments[$0] != nil })
        for customer in removed.sorted() {
            // A move under way ends with the customer: its old pool unloads too.
            if let move = table.pendingMoves.removeValue(forKey: customer), let old = table.pools[move.from] {
                for name in move.leaving { send(.removeScript(customer: customer, name: name), to: old) }
            }
            logger.info("customer removed", metadata: ["customer": "\(customer)"])
        }
        if !removed.isEmpty {
            // Workers forget the customer (its requests answer `no-script`), the
            // ingress its route.
            for pool in table.pools.values {
                for worker in pool.allWorkers { worker.send(.customers(assignments: next.assignments)) }
            }
        }
        if !moved.isEmpty || !removed.isEmpty { writeRoutes() }
        // Each script of a removed customer is unloaded from the pool it ran on, named
        // by the feed or not.
        let leaving = removed.flatMap { customer in
            (before.scripts[customer] ?? [:]).keys.map { ScriptAddress(customer: customer, name: $0) }
        }
        let changed = Set(update.scripts.map { ScriptAddress(customer: $0.spec.customer, name: $0.spec.name) })
            .union(update.removedScripts).union(leaving)
        for script in changed.sorted() where !moved.contains(script.customer) {
            let old = before.scripts[script.customer]?[script.name]
            let new = next.scripts[script.customer]?[script.name]
            guard old != new else { continue }
            if let new, let cohort = next.assignments[script.customer], let pool = table.pools[cohort] {
                table.strikes[script.description] = nil
                logger.info("script version published", metadata: [
                    "script": "\(script)", "version": "\(new.version)", "pool": "\(cohort)",
                ])
                send(.putScript(scheduled(new, after: old)), to: pool)
            } else if new == nil, old != nil, let cohort = before.assignments[script.customer], let pool = table.pools[cohort] {
                send(.removeScript(customer: script.customer, name: script.name), to: pool)
            }
        }
    }

    /// Sends a script message to every worker of `pool`, counted.
    func send(_ message: SupervisorMessage, to pool: PoolState) {
        for worker in pool.allWorkers { worker.send(message) }
        replicaFeed.follower.scriptsPushed += pool.allWorkers.count
    }

    // MARK: - Start

    /// Follows the feed once, then builds the catalog and the quarantine set from the
    /// replica: a host whose control store is unreadable serves what the replica holds.
    /// On the queue.
    func loadCatalog() -> ScriptCatalog {
        replicaFeed.follower.lastOpenAttempt = -Double.infinity
        replicaFeed.follower.appliedRevision = (try? replica.appliedRevision()) ?? nil
        if replicaFeed.follower.appliedRevision == nil { importHostState() }
        followFeed()
        do {
            let contents = try replica.contents()
            replicaFeed.follower.appliedRevision = contents.revision
            table.quarantined = Set(contents.quarantines.map(\.script.description))
            loadStages(contents)
            return ScriptCatalog.from(
                customers: contents.customers.map { (name: $0.key, cohort: $0.value) }, active: contents.scripts)
        } catch {
            logger.error("cannot read the replica; workers keep what they have", metadata: ["error": "\(error)"])
            return replicaFeed.catalog
        }
    }

    /// A new replica beside a control store written by an earlier build takes over
    /// the host's own state kept there (scale, last known good cohorts) once.
    private func importHostState() {
        guard let store = try? store else { return }
        for cohort in (try? store.knownGoodCohorts()) ?? [] {
            try? replica.saveKnownGood(cohort.configuration, actor: "supervisor")
            if let workers = (try? store.workerCount(ofPool: cohort.configuration.name)) ?? nil,
               (try? replica.workerCount(ofPool: cohort.configuration.name)) ?? nil == nil {
                try? replica.setWorkerCount(workers, ofPool: cohort.configuration.name, actor: "supervisor")
            }
        }
    }

    /// Where the feed stands, for `status`.
    func feedStatus() -> FeedStatus {
        FeedStatus(
            appliedRevision: replicaFeed.follower.appliedRevision, latestRevision: replicaFeed.follower.latest, scriptsRead: replicaFeed.follower.scriptsRead,
            scriptsPushed: replicaFeed.follower.scriptsPushed, fullCopies: replicaFeed.follower.fullCopies,
            problem: replicaFeed.follower.problem ?? replicaFeed.follower.reader?.sourceProblem,
            source: replicaFeed.follower.reader?.location, cutOffSince: replicaFeed.follower.reader?.cutOffSince?.timeIntervalSince1970,
            stagesSuspendedSince: stageRunner.stagesSuspendedSince)
    }
}

/// What the change feed brought to this host, on the supervisor's queue.
struct ReplicaFeed {
    /// The scripts and assignments workers are given (the replica's, in memory).
    var catalog = ScriptCatalog()
    /// Where following the control store's feed stands.
    var follower = FeedFollower()
    /// Rollouts in progress, one per artifact kind, as the feed last showed the
    /// driver's machines (the stage runner's view; only the driver changes them).
    var rollouts: [ArtifactKind: ActiveRollout] = [:]
}
