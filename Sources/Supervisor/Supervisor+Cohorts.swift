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
    public func scale(pool name: String, workers: Int) -> Result<[String: Int], ControlError> {
        guard (0...64).contains(workers) else {
            return .failure(ControlError(status: 400, kind: "invalid", message: "--workers must be between 0 and 64, got \(workers)"))
        }
        return queue.sync {
            guard let pool = pools[name] else {
                return .failure(ControlError(status: 404, kind: "not-found", message: "no pool '\(name)'"))
            }
            do {
                try store.setWorkerCount(workers, ofPool: name, actor: "operator")
            } catch {
                return .failure(Self.storeFailure(error))
            }
            resize(pool, to: workers)
            return .success(["workers": workers])
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
