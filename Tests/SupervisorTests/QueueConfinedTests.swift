import Dispatch
import Testing

@testable import Supervisor

/// The supervisor's state is reached only on its queue: on the queue it reads and
/// changes in place; from any other thread a debug build stops at once.
@Suite struct QueueConfinedTests {
    struct Counters {
        var byName: [String: Int] = [:]
        var total = 0
    }

    @Test func changesOnTheQueueAreKept() {
        let queue = DispatchQueue(label: "test.confined")
        let counters = QueueConfined(Counters(), queue: queue)
        queue.sync {
            for name in ["a", "b", "a"] {
                counters.byName[name, default: 0] += 1
                counters.total += 1
            }
        }
        let (byName, total) = queue.sync { (counters.byName, counters.value.total) }
        #expect(byName == ["a": 2, "b": 1])
        #expect(total == 3)
    }

    #if DEBUG
    @Test func anAccessOffTheQueueStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            let counters = QueueConfined(Counters(), queue: DispatchQueue(label: "test.confined"))
            counters.total += 1
        }
    }

    @Test func anAccessFromAnotherQueueStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            let owner = DispatchQueue(label: "test.owner")
            let counters = QueueConfined(Counters(), queue: owner)
            DispatchQueue(label: "test.other").sync { _ = counters.byName.count }
        }
    }
    #endif
}
