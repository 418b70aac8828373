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
            guard let pool = pools[name] else {
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

extension Supervisor {
    /// Moves a customer to another cohort without a failed request through the
    /// ingress: its scripts are loaded and warm on the target pool first, then the
    /// ingress switches, then the old pool lets go (and answers `wrong-pool`).
    public func moveCustomer(_ customer: String, to cohort: String, actor: String) -> Result<CustomerMoved, ControlError> {
        let prepared: Result<(from: String, specs: [ScriptSpec], workers: [WorkerHandle]), ControlError> = queue.sync {
            guard let from = catalog.assignments[customer] else {
                return .failure(ControlError(.notFound, "no customer '\(customer)'"))
            }
            guard let target = pools[cohort] else {
                return .failure(ControlError(.notFound, "no cohort '\(cohort)'"))
            }
            guard from != cohort else {
                return .failure(ControlError(.sameCohort, "\(customer) is already in \(cohort)"))
            }
            guard !shuttingDown else { return .failure(Self.stoppingFailure(customer, cohort)) }
            var assignments = catalog.assignments
            assignments[customer] = cohort
            let specs = (catalog.scripts[customer] ?? [:]).values.sorted { $0.name < $1.name }
            let workers = target.allWorkers.filter { !$0.draining }
            for worker in workers {
                worker.send(.customers(assignments: assignments))
                for spec in specs { worker.send(.putScript(spec)) }
            }
            return .success((from, specs, workers))
        }
        guard case .success(let plan) = prepared else {
            if case .failure(let error) = prepared { return .failure(error) }
            return .failure(ControlError(.internal, "move failed"))
        }
        // 1. Warm: every target worker confirmed every script.
        let wanted = Set(plan.specs.map { "\($0.customer)/\($0.name)@\($0.version)" })
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let ready = queue.sync { plan.workers.allSatisfy { worker in worker.exited || (loadedScripts[worker.pid] ?? []).isSuperset(of: wanted) } }
            if ready { break }
            usleep(5_000)
        }
        // A stop that began during the warm-up drained the target's workers: they
        // count as ready by having exited, but nothing would serve the customer there.
        // Answer that plainly and leave the customer where it was.
        if queue.sync(execute: { shuttingDown }) { return .failure(Self.stoppingFailure(customer, cohort)) }
        // 2. The ingress switches; requests already at the old pool finish there.
        queue.sync { writeRoutes(overrides: [customer: cohort]) }
        usleep(500_000)
        // 3. The store moves the customer; the old pool unloads and answers wrong-pool.
        do {
            _ = try store.moveCustomer(customer, toCohort: cohort, actor: actor)
        } catch {
            queue.sync { writeRoutes() }
            return .failure(Self.storeFailure(error))
        }
        nudgeFeed()
        logger.info("customer moved", metadata: ["customer": "\(customer)", "from": "\(plan.from)", "to": "\(cohort)"])
        return .success(CustomerMoved(customer: customer, from: plan.from, to: cohort))
    }
}

extension Supervisor {
    /// A move refused because the supervisor is draining its pools.
    static func stoppingFailure(_ customer: String, _ cohort: String) -> ControlError {
        ControlError(.noPool, "bulkhead serve is stopping and pool '\(cohort)' is draining; \(customer) was not moved; run the move again once serve is back")
    }
}

/// A pool's new worker count (`cohort scale`).
public struct PoolScaled: Codable, Sendable, Equatable {
    /// The pool.
    public var pool: String
    /// Its worker count from now on.
    public var workers: Int
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
