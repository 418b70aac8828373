#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store

extension Supervisor {
    /// Changes a pool's worker count, live and kept in the store: new slots start at
    /// once, removed slots drain (in-flight requests finish). 0 drains the pool.
    /// No other pool is touched.
    public func scale(pool name: String, workers: Int) -> Result<PoolScaled, ControlError> {
        guard (0...64).contains(workers) else {
            return .failure(ControlError(.invalid, "--workers must be between 0 and 64, got \(workers)"))
        }
        return queue.sync {
            guard let pool = table.pools[name] else {
                return .failure(ControlError(.notFound, "no pool '\(name)'"))
            }
            do {
                try replica.setWorkerCount(workers, ofPool: name, actor: "operator")
            } catch {
                return .failure(Self.storeFailure(error))
            }
            resize(pool, to: workers)
            return .success(PoolScaled(pool: name, workers: workers))
        }
    }

    /// Grows or shrinks a pool's slots (on the queue).
    func resize(_ pool: PoolState, to workers: Int) {
        let before = pool.slots.count
        pool.cohort.workers = workers
        pool.cohort.canaryWorkers = min(pool.cohort.canaryWorkers, workers)
        if workers > before {
            pool.slots.append(contentsOf: Array(repeating: nil, count: workers - before))
            for slot in before..<workers { spawnWorker(pool: pool, slot: slot) }
        } else if workers < before {
            for slot in workers..<before {
                pool.restartDue[slot] = nil
                if let worker = pool.slots[slot], !worker.exited {
                    worker.draining = true
                    pool.leaving.append(worker)
                    worker.send(.drain)
                }
            }
            pool.slots.removeLast(before - workers)
        }
        logger.info("pool scaled", metadata: ["pool": "\(pool.cohort.name)", "from": "\(before)", "to": "\(workers)"])
    }
}

/// A customer moving between pools, as the host applies it from the feed: the
/// target pool is warmed first (every worker confirmed the customer's scripts, or a
/// deadline passed), then the ingress switches, then the old pool lets go.
struct PendingMove {
    /// The customer.
    var customer: String
    /// The pool it leaves.
    var from: String
    /// The pool it joins.
    var to: String
    /// Scripts the target's workers must confirm (`customer/name@version`).
    var wanted: Set<String>
    /// The script names the old pool unloads once the move is done.
    var leaving: [String]
    /// The target workers warmed.
    var workers: [WorkerHandle]
    /// When the switch happens even if the warm-up is not confirmed, monotonic seconds.
    var deadline: Double
    /// When the ingress switched, once it did.
    var switchedAt: Double?
}

extension Supervisor {
    /// Longest a move waits for the target pool's workers to confirm the scripts.
    static let moveWarmDeadline = 10.0
    /// Time requests already at the old pool get to finish after the ingress switched.
    static let moveSettle = 0.5

    /// Starts moving `customer` (on the queue): its scripts and new assignment go to
    /// the target pool's workers only; the ingress and the old pool keep the old
    /// assignment until `advanceMoves` sees the target warm.
    func beginMove(_ customer: String, from: String, to: String, catalog next: ScriptCatalog, leaving: [String]) {
        guard let target = table.pools[to] else { return }
        let specs = (next.scripts[customer] ?? [:]).values.sorted { $0.name < $1.name }
        let workers = target.allWorkers.filter { !$0.draining }
        for worker in workers {
            worker.send(.customers(assignments: next.assignments))
            for spec in specs {
                table.strikes["\(customer)/\(spec.name)"] = nil
                worker.send(.putScript(spec))
            }
        }
        replicaFeed.follower.scriptsPushed += workers.count * specs.count
        table.pendingMoves[customer] = PendingMove(
            customer: customer, from: from, to: to,
            wanted: Set(specs.map { "\($0.customer)/\($0.name)@\($0.version)" }), leaving: leaving,
            workers: workers, deadline: Self.now() + Self.moveWarmDeadline)
        logger.info("moving customer: warming the target pool", metadata: ["customer": "\(customer)", "from": "\(from)", "to": "\(to)"])
    }

    /// Every tick: switches warmed moves, then lets the old pools go.
    func advanceMoves(now: Double) {
        for (customer, var move) in table.pendingMoves {
            if let switchedAt = move.switchedAt {
                guard now - switchedAt >= Self.moveSettle else { continue }
                table.pendingMoves[customer] = nil
                // The old pool unloads and answers wrong-pool from now on.
                for pool in table.pools.values {
                    for worker in pool.allWorkers { worker.send(.customers(assignments: replicaFeed.catalog.assignments)) }
                }
                if let old = table.pools[move.from] {
                    for name in move.leaving { send(.removeScript(customer: customer, name: name), to: old) }
                }
                logger.info("customer moved", metadata: ["customer": "\(customer)", "from": "\(move.from)", "to": "\(move.to)"])
                continue
            }
            let warm = move.workers.allSatisfy { $0.exited || (table.loadedScripts[$0.pid] ?? []).isSuperset(of: move.wanted) }
            guard warm || now >= move.deadline else { continue }
            if !warm {
                logger.warning("moving customer: the target pool did not confirm every script in time; switching anyway",
                               metadata: ["customer": "\(customer)", "to": "\(move.to)"])
            }
            move.switchedAt = now
            table.pendingMoves[customer] = move
            // Requests already at the old pool finish there.
            writeRoutes()
        }
    }
}

/// A pool's new worker count (`cohort scale`).
public struct PoolScaled: Codable, Sendable, Equatable {
    /// The pool.
    public var pool: String
    /// Its worker count from now on.
    public var workers: Int
}
