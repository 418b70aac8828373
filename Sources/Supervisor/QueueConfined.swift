import Dispatch

/// State that one owner keeps on the supervisor's serial queue: every read and
/// write goes through here, and debug builds (the tests) stop at the first access
/// from any other thread, as `LoopBound` does for a worker's loop. Socket threads,
/// timers and the API reach the state only by posting to the queue.
///
/// The members of `State` read and write as the box's own (`table.pools`), in
/// place: a dictionary changed through here is not copied.
@dynamicMemberLookup
final class QueueConfined<State>: @unchecked Sendable {
    private var state: State
    private let queue: DispatchQueue

    /// `state`, to be touched only on `queue`.
    init(_ state: State, queue: DispatchQueue) {
        self.state = state
        self.queue = queue
    }

    /// The whole state.
    var value: State {
        _read {
            checkQueue()
            yield state
        }
        _modify {
            checkQueue()
            yield &state
        }
    }

    subscript<Member>(dynamicMember member: WritableKeyPath<State, Member>) -> Member {
        _read {
            checkQueue()
            yield state[keyPath: member]
        }
        _modify {
            checkQueue()
            yield &state[keyPath: member]
        }
    }

    @inline(__always)
    private func checkQueue() {
        #if DEBUG
        dispatchPrecondition(condition: .onQueue(queue))
        #endif
    }
}
