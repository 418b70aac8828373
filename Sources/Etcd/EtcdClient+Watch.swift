import AsyncHTTPClient
import Foundation
import NIOCore

// MARK: Watch

extension EtcdClient {
    /// Watches `key` (or, with `prefix`, every key starting with it): each answer
    /// holds the changes of one or more revisions, in order.
    ///
    /// The stream's first answer is the watch's creation (`created`, no events). It
    /// fails, instead of hanging, when:
    /// - the start revision was compacted: `EtcdError.compacted(compactRevision:)`
    ///   (read the keys again, then watch from the read's revision + 1);
    /// - with `requireLeader`, the member lost its leader: `EtcdError.noLeader`, about
    ///   three election timeouts after the member noticed (etcd's rule for streams
    ///   that asked for a leader);
    /// - the member went away: `EtcdError.unavailable`.
    ///
    /// A watch does not resume on its own: watch again from the last revision seen
    /// + 1. Ending the iteration (or cancelling its task) closes the watch.
    /// - Parameters:
    ///   - startRevision: the first revision to report, 0 for changes from now on.
    ///   - progressNotify: ask etcd for an empty answer now and then (every 10
    ///     minutes by default, `--experimental-watch-progress-notify-interval`) so
    ///     that a quiet watch still learns the current revision.
    ///   - prevKV: put each key's previous value in its event.
    ///   - requireLeader: fail when the member loses its leader.
    public func watch(
        _ key: some EtcdBytes, prefix: Bool = false, startRevision: Int64 = 0, progressNotify: Bool = false, prevKV: Bool = false,
        requireLeader: Bool = true
    ) -> AsyncThrowingStream<WatchResponse, any Error> {
        var bytes = key.etcdBytes
        var end: [UInt8]?
        if prefix {
            end = EtcdKeyRange.prefixEnd(bytes)
            if bytes.isEmpty { bytes = [0] }
        }
        let request = WireWatchRequest(
            create_request: .init(
                key: base64(bytes), range_end: end.map(base64), start_revision: startRevision == 0 ? nil : String(startRevision),
                progress_notify: progressNotify ? true : nil, prev_kv: prevKV ? true : nil))
        let (stream, continuation) = AsyncThrowingStream<WatchResponse, any Error>.makeStream()
        let task = Task {
            do {
                try await self.runWatch(request, requireLeader: requireLeader) { continuation.yield($0) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Opens the watch on the first member that takes it and forwards its answers
    /// until it ends; returns only when cancelled.
    private func runWatch(
        _ watch: WireWatchRequest, requireLeader: Bool, yield: (WatchResponse) -> Void
    ) async throws(EtcdError) {
        let body = try Self.encode(watch)
        try await ensureToken()
        let opened: (HTTPClientResponse, URL)
        do {
            opened = try await openStream("/v3/watch", body, requireLeader: requireLeader)
        } catch .authFailed(let message) where message.contains("invalid auth token") && configuration.credentials != nil {
            clearToken()
            try await ensureToken()
            opened = try await openStream("/v3/watch", body, requireLeader: requireLeader)
        }
        let (response, endpoint) = opened
        var splitter = JSONLineSplitter()
        var iterator = response.body.makeAsyncIterator()
        while true {
            let chunk: ByteBuffer?
            do {
                chunk = try await iterator.next()
            } catch {
                if Task.isCancelled { return }
                throw .unavailable([.init(endpoint: endpoint.absoluteString, reason: "the watch stream broke: \(error)")])
            }
            let lines: [[UInt8]]
            if let chunk {
                do {
                    lines = try splitter.feed(chunk.readableBytesView)
                } catch {
                    throw .invalid(message: "\(endpoint.absoluteString) sent a watch answer past \(JSONLineSplitter.maximumLineBytes) bytes")
                }
            } else {
                lines = splitter.finish().map { [$0] } ?? []
            }
            for line in lines {
                let item: WireStreamItem<WireWatchResponse>
                do {
                    item = try JSONDecoder().decode(WireStreamItem<WireWatchResponse>.self, from: Data(line))
                } catch {
                    throw .invalid(message: "\(endpoint.absoluteString) sent a watch answer the client cannot read: \(error)")
                }
                if let error = item.error {
                    // A stream that fails after it started: the gateway writes the gRPC
                    // status as the last object (no leader, or the member stopping).
                    switch GatewayError(code: error.code, message: error.message).meaning(at: endpoint.absoluteString) {
                    case .final(let failure), .tryAnotherMember(let failure): throw failure
                    }
                }
                guard let result = item.result else { continue }
                if result.canceled {
                    if result.compactRevision > 0 { throw .compacted(compactRevision: result.compactRevision) }
                    let reason = result.cancelReason.isEmpty ? "etcd cancelled the watch" : result.cancelReason
                    switch GatewayError(code: 0, message: reason).meaning(at: endpoint.absoluteString) {
                    case .final(let failure), .tryAnotherMember(let failure): throw failure
                    }
                }
                yield(result.response)
            }
            if chunk == nil {
                if Task.isCancelled { return }
                throw .unavailable([.init(endpoint: endpoint.absoluteString, reason: "the watch stream ended")])
            }
        }
    }

    /// Starts a streaming call on the first member that answers 200, trying them in
    /// turn (and again, with a pause, until the failover deadline) like `call`.
    private func openStream(_ path: String, _ body: Data, requireLeader: Bool) async throws(EtcdError) -> (HTTPClientResponse, URL) {
        let deadline = ContinuousClock.now + configuration.timeouts.failover
        let endpoints = configuration.endpoints
        var failures: [Int: String] = [:]
        var onlyNoLeader = true
        var backoff = Duration.milliseconds(50)
        while true {
            let start = try preferredIndex()
            for step in 0..<endpoints.count {
                let index = (start + step) % endpoints.count
                let endpoint = endpoints[index]
                let request = makeRequest(endpoint, path, body, requireLeader: requireLeader)
                let response: HTTPClientResponse
                do {
                    // The answer's head comes with the watch's creation; a member that
                    // does not send it in time is skipped. The stream itself has no
                    // deadline.
                    response = try await withHead(of: request, within: configuration.timeouts.request)
                } catch let error as EtcdError {
                    throw error
                } catch {
                    if Task.isCancelled { throw .cancelled }
                    switch Self.classify(error) {
                    case .notSent(let reason), .noAnswer(let reason):
                        onlyNoLeader = false
                        failures[index] = reason
                        continue
                    case .cancelled:
                        throw .cancelled
                    case .answer, .refused:
                        continue
                    }
                }
                if response.status == .ok {
                    prefer(index)
                    return (response, endpoint)
                }
                let data: Data
                do {
                    data = Data(buffer: try await response.body.collect(upTo: 1 << 20))
                } catch {
                    data = Data()
                }
                let error = Self.gatewayError(status: response.status, body: data)
                switch error.meaning(at: endpoint.absoluteString) {
                case .final(let failure):
                    throw failure
                case .tryAnotherMember(let failure):
                    if failure != .noLeader { onlyNoLeader = false }
                    failures[index] = failure.description
                }
            }
            backoff = try await Self.waitForNextRound(
                failures: failures, endpoints: endpoints, onlyNoLeader: onlyNoLeader, backoff: backoff, deadline: deadline)
        }
    }

    /// Sends `request` and returns once the answer's head arrived, failing with
    /// `HTTPClientError.deadlineExceeded` after `limit`, without a deadline on the
    /// body that follows.
    private func withHead(of request: HTTPClientRequest, within limit: Duration) async throws -> HTTPClientResponse {
        try await withThrowingTaskGroup(of: HTTPClientResponse?.self) { group in
            group.addTask {
                try await self.http.execute(request, deadline: .distantFuture)
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let response = first else {
                throw HTTPClientError.deadlineExceeded
            }
            return response
        }
    }
}

/// Splits the gateway's stream into its JSON objects: each is followed by a newline
/// (the last one, an error, sometimes not), and chunks of the HTTP body cut objects
/// anywhere. JSON text has no raw newline inside an object, so the newline is the
/// frame.
struct JSONLineSplitter {
    /// An object longer than this is refused (etcd's answers are far smaller).
    static let maximumLineBytes = 512 << 20

    struct TooLong: Error {}

    private var pending: [UInt8] = []

    /// Adds a chunk; returns the objects it completed.
    mutating func feed(_ chunk: some Collection<UInt8>) throws(TooLong) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var rest = chunk[...]
        while let newline = rest.firstIndex(of: 0x0A) {
            pending.append(contentsOf: rest[rest.startIndex..<newline])
            if pending.contains(where: { $0 != 0x20 && $0 != 0x0D && $0 != 0x09 }) { lines.append(pending) }
            pending.removeAll(keepingCapacity: true)
            rest = rest[rest.index(after: newline)...]
        }
        pending.append(contentsOf: rest)
        if pending.count > Self.maximumLineBytes { throw TooLong() }
        return lines
    }

    /// The object left when the stream ended without a final newline, if any.
    mutating func finish() -> [UInt8]? {
        defer { pending.removeAll() }
        return pending.contains(where: { $0 != 0x20 && $0 != 0x0D && $0 != 0x09 && $0 != 0x0A }) ? pending : nil
    }
}
