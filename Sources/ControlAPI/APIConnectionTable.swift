/// Which connections the control API holds, and whom a new one displaces: the
/// decisions of the connection cap, with no I/O (`APIConnectionGuard` performs them).
///
/// A connection is *idle* while it has no request in progress: from its accept until
/// its first complete request head, and again after each answer. At the cap, or at
/// its peer's limit, a new connection displaces the connection that has been idle
/// longest (among the peer's own when the peer is at its limit), the way a careful
/// server sheds idle connections first; only when every candidate is in the middle
/// of a request is the new one refused. So a flood of connections that
/// never send a request cannot keep a real client out (each new connection takes
/// the place of the stalest idle one, and a real client sends its request at once),
/// and one address that floods displaces only its own connections.
struct APIConnectionTable: Sendable {
    /// One connection.
    struct Entry: Sendable, Equatable {
        /// The peer's address.
        var peer: String
        /// Requests read and not yet answered.
        var requestsInProgress: Int
        /// When it last became idle, as an ever-growing stamp (older is smaller).
        var idleSince: UInt64
    }

    /// What to do with a new connection.
    enum Admission: Equatable, Sendable {
        /// Take it; close these connections first (already forgotten by the table).
        case admit(id: Int, evicting: [Int])
        /// Close it at once: every connection it could displace is answering a request.
        case refuse
    }

    /// The cap on all connections.
    let maxConnections: Int
    /// The cap on the connections of one peer address.
    let maxPerPeer: Int

    private(set) var entries: [Int: Entry] = [:]
    private(set) var perPeer: [String: Int] = [:]
    private var nextID = 0
    private var stamp: UInt64 = 0

    init(maxConnections: Int, maxPerPeer: Int) {
        self.maxConnections = max(1, maxConnections)
        self.maxPerPeer = max(1, maxPerPeer)
    }

    /// Connections held.
    var count: Int { entries.count }

    /// A new connection from `peer`.
    mutating func open(peer: String) -> Admission {
        var evicting: [Int] = []
        if perPeer[peer, default: 0] >= maxPerPeer {
            guard let victim = oldestIdle(where: { $0.peer == peer }) else { return .refuse }
            forget(victim)
            evicting.append(victim)
        }
        if entries.count >= maxConnections {
            guard let victim = oldestIdle(where: { _ in true }) else {
                // Nothing was displaced above, or the count would be under the cap.
                return .refuse
            }
            forget(victim)
            evicting.append(victim)
        }
        nextID += 1
        entries[nextID] = Entry(peer: peer, requestsInProgress: 0, idleSince: nextStamp())
        perPeer[peer, default: 0] += 1
        return .admit(id: nextID, evicting: evicting)
    }

    /// A complete request head arrived on `id`.
    mutating func requestStarted(_ id: Int) {
        entries[id]?.requestsInProgress += 1
    }

    /// The answer to a request on `id` has been written.
    mutating func requestFinished(_ id: Int) {
        guard var entry = entries[id] else { return }
        entry.requestsInProgress = max(0, entry.requestsInProgress - 1)
        if entry.requestsInProgress == 0 { entry.idleSince = nextStamp() }
        entries[id] = entry
    }

    /// `id` closed (a no-op for one already displaced).
    mutating func closed(_ id: Int) {
        forget(id)
    }

    private mutating func forget(_ id: Int) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        let left = perPeer[entry.peer, default: 1] - 1
        perPeer[entry.peer] = left > 0 ? left : nil
    }

    private func oldestIdle(where matches: (Entry) -> Bool) -> Int? {
        var best: (id: Int, since: UInt64)?
        for (id, entry) in entries where entry.requestsInProgress == 0 && matches(entry) {
            if best.map({ entry.idleSince < $0.since }) ?? true { best = (id, entry.idleSince) }
        }
        return best?.id
    }

    private mutating func nextStamp() -> UInt64 {
        stamp += 1
        return stamp
    }
}
