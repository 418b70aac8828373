import Dispatch
import Etcd
import EtcdStore
import Foundation
import Store
import Synchronization
import Testing

// MARK: - One etcd per suite

/// The etcd the suite's tests share; each test works under a prefix of its own.
enum SharedEtcd {
    @TaskLocal static var cluster: EtcdCluster?

    /// The shared cluster, or an issue when the suite has no `.etcdServer` trait.
    static func current() throws -> EtcdCluster {
        guard let cluster else { throw EtcdInstall.Failure(description: "the suite has no .etcdServer trait") }
        return cluster
    }
}

/// Starts one etcd (through EtcdTests' harness) for a whole suite and stops it, by
/// pid, when the suite ends.
struct EtcdServerTrait: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let cluster = try await EtcdCluster.start()
        print("etcd for \(test.name): pid \(cluster.members[0].pid) at \(cluster.endpoints[0]), up in \(String(format: "%.2f", cluster.startSeconds)) s")
        do {
            try await SharedEtcd.$cluster.withValue(cluster) { try await function() }
        } catch {
            cluster.stop()
            throw error
        }
        cluster.stop()
    }
}

extension Trait where Self == EtcdServerTrait {
    /// One etcd for the suite.
    static var etcdServer: Self { Self() }
}

// MARK: - Backends

/// The two stores the same checks run against.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, etcd
    var testDescription: String { rawValue }
}

/// A fresh, empty store of `backend` with a stepping clock.
func withStore(
    _ backend: Backend, maximumContentBytes: Int = 16 * 1024 * 1024,
    _ body: @escaping @Sendable (any BulkheadStore) throws -> Void
) async throws {
    let clock = SteppingClock()
    switch backend {
    case .sqlite:
        let directory = NSTemporaryDirectory() + "bulkhead-etcdstore-tests-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = SQLiteStoreConfiguration()
        configuration.clock = { clock.now() }
        configuration.maximumContentBytes = maximumContentBytes
        let store = try SQLiteStore(path: directory + "/bulkhead.sqlite", configuration: configuration)
        try await onStoreThread { try body(store) }
    case .etcd:
        let client = try EtcdClient(endpoints: try SharedEtcd.current().endpoints)
        var configuration = EtcdStoreConfiguration()
        configuration.clock = { clock.now() }
        configuration.maximumContentBytes = maximumContentBytes
        let store = try EtcdStore(client: client, prefix: uniquePrefix(), configuration: configuration)
        do {
            try await onStoreThread { try body(store) }
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }
}

/// A prefix no other test uses.
func uniquePrefix() -> String {
    "/bulkhead-test-\(UUID().uuidString.prefix(8).lowercased())/"
}

/// Runs `body` on a dispatch thread, never on a Swift-concurrency thread: the etcd
/// store blocks its caller (as the control plane's dispatch threads call it).
func onStoreThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try body() })
        }
    }
}

// The stepping clock, `hash`, `storeError` and `auditActions` are StoreTests' own
// (StoreTestSupport.swift, linked here).

/// Milliseconds since `start`.
func milliseconds(since start: ContinuousClock.Instant) -> Double {
    (ContinuousClock.now - start).seconds * 1000
}
