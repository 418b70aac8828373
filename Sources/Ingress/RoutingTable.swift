import BulkheadCore
import Foundation
import HTTPWire

/// Which pool serves each customer: the contents of `DATA/run/routes.json`
/// (``IngressRoutes``), which the supervisor writes (temp file + rename) whenever a
/// customer or a pool moves.
///
/// `max_body_bytes` is each pool's cohort `max_body_kb` in bytes: the ingress refuses a
/// larger body for a customer of that pool before buffering it. A file without it (a
/// supervisor older than the key) leaves the ingress's own limit in force.
///
/// Immutable once built, so the watcher hands the same instance to every event loop.
public final class RoutingTable: Sendable {
    /// Where a customer's requests go.
    public enum Destination: Hashable, Sendable {
        /// The customer's pool listens on `127.0.0.1:port` and takes bodies of at most
        /// `maxBodyBytes` (nil: the table does not say; the ingress's own limit holds).
        case pool(name: String, port: Int, maxBodyBytes: Int?)
        /// The customer is assigned to a pool the table gives no port for.
        case poolWithoutPort(name: String)
        /// The table does not know the customer.
        case unknownCustomer
    }

    /// The supervisor's version of the table.
    public let version: Int
    /// Port of each pool, by pool name.
    public let pools: [String: Int]
    /// Pool of each customer, by customer name.
    public let customers: [String: String]
    /// The largest request body each pool takes, in bytes, by pool name.
    public let maxBodyBytes: [String: Int]
    /// The largest body any pool of the table takes (nil when the table gives no
    /// limits): what the ingress accepts before it knows a request's pool.
    public let largestMaxBodyBytes: Int?
    /// Each customer's destination, resolved once so a request costs one lookup.
    private let destinations: [String: Destination]

    /// A table from its parts. Ports must be in 1...65535 and body limits at least 0
    /// (`parse` checks both).
    public init(version: Int, pools: [String: Int], customers: [String: String], maxBodyBytes: [String: Int] = [:]) {
        self.version = version
        self.pools = pools
        self.customers = customers
        self.maxBodyBytes = maxBodyBytes
        self.largestMaxBodyBytes = maxBodyBytes.values.max()
        var destinations: [String: Destination] = [:]
        destinations.reserveCapacity(customers.count)
        for (customer, pool) in customers {
            if let port = pools[pool] {
                destinations[customer] = .pool(name: pool, port: port, maxBodyBytes: maxBodyBytes[pool])
            } else {
                destinations[customer] = .poolWithoutPort(name: pool)
            }
        }
        self.destinations = destinations
    }

    /// Where `customer`'s requests go.
    public func destination(of customer: String) -> Destination {
        destinations[customer] ?? .unknownCustomer
    }

    // MARK: - Parsing

    /// The largest routes file accepted: a file over it is refused (and the last good
    /// table kept) rather than read whole. A million customers fit in about 40 MB.
    public static let defaultMaxFileBytes = 64 * 1024 * 1024

    /// Parses and checks the file's bytes.
    public static func parse(_ data: Data) throws(RoutesFileError) -> RoutingTable {
        let wire: IngressRoutes
        do {
            wire = try IngressRoutes.decode(data)
        } catch let error as DecodingError {
            throw .malformed(Self.describe(error))
        } catch {
            throw .malformed("\(error)")
        }
        for (pool, port) in wire.pools.sorted(by: { $0.key < $1.key }) where !(1...65535).contains(port) {
            throw .malformed("pool '\(pool)' has port \(port); ports are 1 to 65535")
        }
        for (pool, limit) in wire.maxBodyBytes.sorted(by: { $0.key < $1.key }) where limit < 0 {
            throw .malformed("pool '\(pool)' has max_body_bytes \(limit); a body limit is at least 0")
        }
        return RoutingTable(version: wire.version, pools: wire.pools, customers: wire.customers, maxBodyBytes: wire.maxBodyBytes)
    }

    /// A decoding error in a person's words: what was wrong and where.
    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "the top level" : "'" + keys.joined(separator: ".") + "'"
        }
        switch error {
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "bad value at \(path(context))"
        case .keyNotFound(let key, let context):
            return "missing '\(key.stringValue)' in \(path(context))"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "\(path(context)) is not \(Self.typeName(type))"
        @unknown default:
            return "\(error)"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is String.Type: "a string"
        default: "of the expected type (\(type))"
        }
    }
}

/// Why a routes file was not taken. The ingress keeps its last good table and says so.
public enum RoutesFileError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file does not exist (yet, or any more).
    case missing
    /// The file could not be read.
    case unreadable(String)
    /// The file is larger than the limit, in bytes.
    case tooLarge(size: Int, limit: Int)
    /// The contents are not a routing table: what is wrong.
    case malformed(String)

    /// What went wrong, for the log.
    public var description: String {
        switch self {
        case .missing: "missing"
        case .unreadable(let reason): "unreadable: \(reason)"
        case .tooLarge(let size, let limit): "\(size) bytes, over the \(limit)-byte limit"
        case .malformed(let reason): "malformed: \(reason)"
        }
    }
}
