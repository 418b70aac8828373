import AsyncHTTPClient
import BulkheadCore
import Foundation
import NIOCore
import NIOHTTP1
import Rollout
import Synchronization

/// A host agent's health reports to the control process that leads the fleet, over
/// HTTP (health never goes through etcd): every `interval`, the host's status as a
/// ``HostReport`` to `POST /v1/fleet/hosts/NAME/report` on the leader's API, with the
/// report token whose hash the host's own key holds (``EtcdHostPresence``).
///
/// The leader is read from the store (`driver/leader`) at start, after any refused or
/// failed report, and every `leaderCheck` besides. Nothing here can stop the host:
/// a report that fails is counted and the next one goes at the next interval.
public final class EtcdHealthReporter: Sendable {
    /// How the reports go, for the host's status and log.
    public struct Progress: Sendable, Equatable {
        /// Reports the leader took.
        public var sent = 0
        /// Reports that failed (no leader, unreachable, refused).
        public var failed = 0
        /// The API of the leader last reported to.
        public var leader: String?
        /// Why the last report failed, nil once one goes through.
        public var problem: String?
        /// Since when reports have failed in a row, nil once one goes through.
        public var failingSince: Date?
    }

    let store: EtcdStore
    let presence: EtcdHostPresence
    let interval: Duration
    let leaderCheck: Duration
    let report: @Sendable () async -> HostReport
    let problemChanged: @Sendable (Progress) -> Void
    private let http: HTTPClient
    private let state = Mutex(State())

    private struct State {
        var task: Task<Void, Never>?
        var progress = Progress()
    }

    /// Reports of `presence`'s host, made by `report`, every `interval`;
    /// `problemChanged` hears the progress at each new problem, and when reports go
    /// through again.
    public init(
        store: EtcdStore, presence: EtcdHostPresence, interval: Duration = .seconds(1), leaderCheck: Duration = .seconds(10),
        report: @escaping @Sendable () async -> HostReport, problemChanged: @escaping @Sendable (Progress) -> Void = { _ in }
    ) {
        self.store = store
        self.presence = presence
        self.interval = interval
        self.leaderCheck = leaderCheck
        self.report = report
        self.problemChanged = problemChanged
        var settings = HTTPClient.Configuration()
        settings.timeout = .init(connect: .seconds(1), read: .seconds(2))
        settings.connectionPool.retryConnectionEstablishment = false
        settings.redirectConfiguration = .disallow
        http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: settings)
    }

    /// How the reports went so far.
    public var progress: Progress { state.withLock { $0.progress } }

    /// Starts reporting (once).
    public func start() {
        state.withLock { state in
            guard state.task == nil else { return }
            state.task = Task.detached { [self] in await run() }
        }
    }

    /// Stops reporting and closes the HTTP client.
    public func stop() async {
        let task = state.withLock { $0.task }
        task?.cancel()
        await task?.value
        try? await http.shutdown()
    }

    private func run() async {
        let clock = ContinuousClock()
        var leader: ControlListing?
        var leaderReadAt = clock.now
        while !Task.isCancelled {
            let outcome: String?
            do {
                if leader == nil || clock.now - leaderReadAt >= leaderCheck {
                    leader = try await store.leader()
                    leaderReadAt = clock.now
                }
                if let current = leader {
                    outcome = try await send(to: current)
                } else {
                    outcome = "no control process leads the fleet (none runs, or the election has no answer yet)"
                }
            } catch {
                outcome = "\(error)"
            }
            if outcome != nil { leader = nil }
            record(outcome, leader: leader?.api)
            try? await Task.sleep(for: interval)
        }
    }

    /// Sends one report to `leader`: nil when it was taken, else why not.
    private func send(to leader: ControlListing) async throws -> String? {
        guard presence.written != nil else {
            return "the host's key \(presence.key) is not written yet (its report token is not in the store)"
        }
        let body = try JSONEncoder().encode(await report())
        let path = "/v1/fleet/hosts/\(presence.name)/report"
        var request = HTTPClientRequest(url: "http://\(leader.api)\(path)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Authorization", value: "Bearer \(presence.reportToken)")
        request.body = .bytes(ByteBuffer(data: body))
        let response = try await http.execute(request, timeout: .seconds(3))
        let answer = try await response.body.collect(upTo: 64 * 1024)
        guard response.status == .noContent || response.status == .ok else {
            let text = (try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer: answer))).map { "\($0.error): \($0.message)" }
                ?? String(buffer: answer).prefix(200).description
            return "the control process at \(leader.api) answered \(response.status.code): \(text)"
        }
        return nil
    }

    private func record(_ problem: String?, leader: String?) {
        let changed = state.withLock { state -> Progress? in
            if problem == nil { state.progress.sent += 1 } else { state.progress.failed += 1 }
            if let leader { state.progress.leader = leader }
            if problem == nil {
                state.progress.failingSince = nil
            } else if state.progress.failingSince == nil {
                state.progress.failingSince = Date()
            }
            let changed = state.progress.problem != problem
            state.progress.problem = problem
            return changed ? state.progress : nil
        }
        if let changed { problemChanged(changed) }
    }
}
