import BulkheadCore
import Foundation
import Testing

/// The routes file's one type, read and written across builds: a binary rollout runs
/// an ingress of one build against a supervisor of the other.
@Suite struct IngressRoutesTests {
    let routes = IngressRoutes(
        version: 7, pools: ["free": 8101, "pro": 8102, "enterprise-eu": 8103],
        customers: ["acme": "pro", "zeta-1": "free", "lost": "gone"],
        maxBodyBytes: ["free": 1_048_576, "pro": 4_194_304, "enterprise-eu": 0])

    /// How the ingress read the file before this type: `max_body_bytes` optional.
    struct PreviousReader: Decodable, Equatable {
        var version: Int
        var pools: [String: Int]
        var customers: [String: String]
        var maxBodyBytes: [String: Int]?

        enum CodingKeys: String, CodingKey {
            case version, pools, customers
            case maxBodyBytes = "max_body_bytes"
        }
    }

    @Test func aTableReadsBackAsWritten() throws {
        let data = try routes.encoded()
        #expect(try IngressRoutes.decode(data) == routes)
    }

    @Test func theBytesAreThoseThePreviousWriterProduced() throws {
        // The supervisor wrote a dictionary through JSONSerialization with sorted keys.
        let previous: [String: Any] = [
            "version": routes.version, "pools": routes.pools, "customers": routes.customers,
            "max_body_bytes": routes.maxBodyBytes,
        ]
        let expected = try JSONSerialization.data(withJSONObject: previous, options: [.sortedKeys])
        let written = try routes.encoded()
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
    }

    @Test func thePreviousReaderTakesANewFile() throws {
        let read = try JSONDecoder().decode(PreviousReader.self, from: routes.encoded())
        #expect(read == PreviousReader(
            version: 7, pools: routes.pools, customers: routes.customers, maxBodyBytes: routes.maxBodyBytes))
    }

    @Test func aFileWithoutBodyLimitsStillReads() throws {
        let old = #"{"customers":{"acme":"pro"},"pools":{"pro":8102},"version":3}"#
        let read = try IngressRoutes.decode(Data(old.utf8))
        #expect(read == IngressRoutes(version: 3, pools: ["pro": 8102], customers: ["acme": "pro"]))
        #expect(read.maxBodyBytes.isEmpty, "no limits: the ingress's own holds")
    }

    @Test func unknownKeysAreIgnored() throws {
        let newer = #"{"customers":{},"pools":{},"version":1,"written_by":"a later build"}"#
        #expect(try IngressRoutes.decode(Data(newer.utf8)).version == 1)
    }

    @Test("a file of the wrong shape is refused", arguments: [
        "{",
        #"{"pools":{},"customers":{}}"#,
        #"{"version":1,"customers":{}}"#,
        #"{"version":1,"pools":{"free":"8101"},"customers":{}}"#,
        #"{"version":1,"pools":{},"customers":{"acme":3}}"#,
        #"{"version":1,"pools":{},"customers":{},"max_body_bytes":{"free":"1"}}"#,
        #"{"version":1,"pools":{},"customers":{},"max_body_bytes":[]}"#,
    ])
    func wrongShape(_ json: String) {
        #expect(throws: DecodingError.self) { try IngressRoutes.decode(Data(json.utf8)) }
    }
}
