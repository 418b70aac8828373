import Foundation

/// The ingress's routing table file, `DATA/run/routes.json`, as both sides see it: the
/// supervisor encodes it (temp file + rename) whenever a customer or a pool moves, the
/// ingress decodes it. One type, so the two cannot drift apart.
///
/// ```json
/// {"customers":{"acme":"pro"},"max_body_bytes":{"free":1048576,"pro":4194304},"pools":{"free":8101,"pro":8102},"version":7}
/// ```
///
/// The format is fixed across a binary rollout, when an ingress of one build may read
/// a file written by the other: keys are unchanged, unknown keys are ignored when
/// reading, and ``encoded()`` writes the bytes the earlier `JSONSerialization`
/// writer did (compact, sorted keys).
public struct IngressRoutes: Codable, Sendable, Equatable {
    /// The supervisor's count of tables written; grows with each write, so the
    /// ingress's status can tell which table it serves.
    public var version: Int
    /// The port each pool listens on (`127.0.0.1`), by pool name.
    public var pools: [String: Int]
    /// The pool of each customer, by customer name.
    public var customers: [String: String]
    /// The largest request body each pool takes, in bytes (its cohort's
    /// `max_body_kb`), by pool name: the ingress refuses a larger body before
    /// buffering it. Empty when the file has no `max_body_bytes` (a supervisor older
    /// than the key): the ingress's own limit holds.
    public var maxBodyBytes: [String: Int]

    enum CodingKeys: String, CodingKey {
        case version, pools, customers
        case maxBodyBytes = "max_body_bytes"
    }

    /// Creates a table from its parts.
    public init(version: Int, pools: [String: Int], customers: [String: String], maxBodyBytes: [String: Int] = [:]) {
        self.version = version
        self.pools = pools
        self.customers = customers
        self.maxBodyBytes = maxBodyBytes
    }

    /// Decodes a table; `max_body_bytes` may be absent (a file from an older supervisor).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decode(Int.self, forKey: .version)
        pools = try container.decode([String: Int].self, forKey: .pools)
        customers = try container.decode([String: String].self, forKey: .customers)
        maxBodyBytes = try container.decodeIfPresent([String: Int].self, forKey: .maxBodyBytes) ?? [:]
    }

    /// The file's bytes: compact JSON with sorted keys.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }

    /// Decodes the file's bytes. Only the shape is checked here; the ingress also
    /// checks ports and limits (`RoutingTable.parse`).
    public static func decode(_ data: Data) throws -> IngressRoutes {
        try JSONDecoder().decode(IngressRoutes.self, from: data)
    }
}
