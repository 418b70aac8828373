import BulkheadCore
import Foundation
import Store
import Synchronization
import Testing

/// A fresh directory under the system's temporary directory, removed when released.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        path = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("bulkhead-store-tests-" + UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Where tests put the store.
    var storePath: String { path + "/bulkhead.sqlite" }
}

/// A clock that starts at a fixed whole second and moves one second per reading, so
/// stored times compare exactly and later changes have later times.
final class SteppingClock: Sendable {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    private let readings = Mutex(0)

    func now() -> Date {
        let count = readings.withLock { count in
            defer { count += 1 }
            return count
        }
        return Self.start.addingTimeInterval(Double(count))
    }
}

/// A store on a new file with a stepping clock.
func makeStore(
    in directory: TemporaryDirectory, clock: SteppingClock = SteppingClock(), maximumPageCount: Int? = nil,
    maximumContentBytes: Int = SQLiteStoreConfiguration().maximumContentBytes
) throws -> SQLiteStore {
    var configuration = SQLiteStoreConfiguration()
    configuration.clock = { clock.now() }
    configuration.maximumPageCount = maximumPageCount
    configuration.maximumContentBytes = maximumContentBytes
    return try SQLiteStore(path: directory.storePath, configuration: configuration)
}

/// The token hash of a made-up token.
func hash(_ token: String) -> String {
    TokenHash.of(token: token)
}

/// Runs `body` and returns the ``StoreError`` it throws; records an issue when it
/// throws something else or nothing.
func storeError(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> StoreError? {
    do {
        try body()
        Issue.record("expected a StoreError, nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as StoreError {
        return error
    } catch {
        Issue.record("expected a StoreError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The actions of every audit event, oldest first.
func auditActions(_ store: some AuditLog) throws -> [String] {
    try store.auditEvents(after: 0, limit: 10_000).map(\.action.rawValue)
}

/// A valid cohort configuration, made the way the supervisor makes one: from TOML.
func cohort(_ name: String, order: Int = 1, workers: Int = 2) throws -> CohortConfiguration {
    try CohortConfiguration.parse(
        "name = \"\(name)\"\norder = \(order)\nport = 0\nworkers = \(workers)\n", file: "cohorts/\(name).toml")
}
