import Foundation

// The JSON the gRPC gateway of etcd 3.4 speaks (rpc.proto's messages through
// protobuf's JSON mapping, with the proto field names). What it does that plain
// Codable does not expect, checked against etcd 3.4.23:
// - bytes are base64 strings;
// - int64 and uint64 fields are JSON strings ("revision":"12"); numbers are accepted
//   in requests too, but strings are what protobuf's mapping says, so we send them;
// - fields at their zero value are left out (no "succeeded": false, no "count": "0",
//   no "type" on a PUT event, no "kvs" when nothing matched);
// - enums are their names ("DELETE", "EQUAL"); we accept their numbers too.

// MARK: Decoding helpers

extension KeyedDecodingContainer {
    /// An int64 sent as a string or a number; 0 when left out.
    func int64(_ key: Key) throws -> Int64 {
        if let text = try? decodeIfPresent(String.self, forKey: key) {
            guard let value = Int64(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not an int64: \(text)")
            }
            return value
        }
        return try decodeIfPresent(Int64.self, forKey: key) ?? 0
    }

    /// A uint64 sent as a string or a number; 0 when left out.
    func uint64(_ key: Key) throws -> UInt64 {
        if let text = try? decodeIfPresent(String.self, forKey: key) {
            guard let value = UInt64(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not a uint64: \(text)")
            }
            return value
        }
        return try decodeIfPresent(UInt64.self, forKey: key) ?? 0
    }

    /// Base64 bytes; empty when left out.
    func bytes(_ key: Key) throws -> [UInt8] {
        guard let text = try decodeIfPresent(String.self, forKey: key) else { return [] }
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not base64")
        }
        return Array(data)
    }

    /// A boolean; false when left out.
    func bool(_ key: Key) throws -> Bool {
        try decodeIfPresent(Bool.self, forKey: key) ?? false
    }

    /// A list; empty when left out.
    func list<T: Decodable>(_ type: T.Type, _ key: Key) throws -> [T] {
        try decodeIfPresent([T].self, forKey: key) ?? []
    }
}

/// Base64 for bytes in a request.
func base64(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString()
}

// MARK: Answers

/// An answer whose header says which member answered.
protocol HeaderCarrying {
    var answerHeader: ResponseHeader? { get }
}

extension WireRangeResponse: HeaderCarrying { var answerHeader: ResponseHeader? { response.header } }
extension WirePutResponse: HeaderCarrying { var answerHeader: ResponseHeader? { response.header } }
extension WireDeleteResponse: HeaderCarrying { var answerHeader: ResponseHeader? { response.header } }
extension WireTxnResponse: HeaderCarrying { var answerHeader: ResponseHeader? { response.header } }
extension WireHeaderOnly: HeaderCarrying { var answerHeader: ResponseHeader? { header } }
extension WireStatus: HeaderCarrying { var answerHeader: ResponseHeader? { status.header } }
extension WireMemberList: HeaderCarrying { var answerHeader: ResponseHeader? { header } }
extension WireLeaseGrant: HeaderCarrying { var answerHeader: ResponseHeader? { grant.header } }
extension WireLeaseTTL: HeaderCarrying { var answerHeader: ResponseHeader? { ttl.header } }
extension WireStreamItem: HeaderCarrying where Result == WireLeaseTTL { var answerHeader: ResponseHeader? { result?.ttl.header } }

struct WireHeader: Decodable {
    var header: ResponseHeader

    enum CodingKeys: String, CodingKey {
        case clusterID = "cluster_id"
        case memberID = "member_id"
        case revision
        case raftTerm = "raft_term"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        header = ResponseHeader(
            clusterID: try c.uint64(.clusterID), memberID: try c.uint64(.memberID), revision: try c.int64(.revision),
            raftTerm: try c.uint64(.raftTerm))
    }

    static let empty = ResponseHeader(clusterID: 0, memberID: 0, revision: 0, raftTerm: 0)
}

extension KeyedDecodingContainer {
    /// The `header` field (an empty header when left out, as inside a transaction's
    /// answers, which carry only the revision).
    func header(_ key: Key) throws -> ResponseHeader {
        try decodeIfPresent(WireHeader.self, forKey: key)?.header ?? WireHeader.empty
    }
}

struct WireKeyValue: Decodable {
    var kv: KeyValue

    enum CodingKeys: String, CodingKey {
        case key, value, lease, version
        case createRevision = "create_revision"
        case modRevision = "mod_revision"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kv = KeyValue(
            key: try c.bytes(.key), value: try c.bytes(.value), createRevision: try c.int64(.createRevision),
            modRevision: try c.int64(.modRevision), version: try c.int64(.version), lease: try c.int64(.lease))
    }
}

struct WireRangeResponse: Decodable {
    var response: RangeResponse

    enum CodingKeys: String, CodingKey { case header, kvs, more, count }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        response = RangeResponse(
            header: try c.header(.header), kvs: try c.list(WireKeyValue.self, .kvs).map(\.kv), more: try c.bool(.more),
            count: try c.int64(.count))
    }
}

struct WirePutResponse: Decodable {
    var response: PutResponse

    enum CodingKeys: String, CodingKey {
        case header
        case prevKV = "prev_kv"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        response = PutResponse(header: try c.header(.header), prevKV: try c.decodeIfPresent(WireKeyValue.self, forKey: .prevKV)?.kv)
    }
}

struct WireDeleteResponse: Decodable {
    var response: DeleteResponse

    enum CodingKeys: String, CodingKey {
        case header, deleted
        case prevKVs = "prev_kvs"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        response = DeleteResponse(
            header: try c.header(.header), deleted: try c.int64(.deleted), prevKVs: try c.list(WireKeyValue.self, .prevKVs).map(\.kv))
    }
}

struct WireTxnResponse: Decodable {
    var response: TxnResponse

    enum CodingKeys: String, CodingKey { case header, succeeded, responses }

    struct Op: Decodable {
        var response: TxnOpResponse?

        enum CodingKeys: String, CodingKey {
            case range = "response_range"
            case put = "response_put"
            case delete = "response_delete_range"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let range = try c.decodeIfPresent(WireRangeResponse.self, forKey: .range) {
                response = .range(range.response)
            } else if let put = try c.decodeIfPresent(WirePutResponse.self, forKey: .put) {
                response = .put(put.response)
            } else if let delete = try c.decodeIfPresent(WireDeleteResponse.self, forKey: .delete) {
                response = .delete(delete.response)
            } else {
                response = nil
            }
        }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let ops = try c.list(Op.self, .responses)
        var responses: [TxnOpResponse] = []
        for op in ops {
            guard let response = op.response else {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "a transaction answer of an unknown kind"))
            }
            responses.append(response)
        }
        response = TxnResponse(header: try c.header(.header), succeeded: try c.bool(.succeeded), responses: responses)
    }
}

/// An answer that is only a header (compaction, lease revoke, auth changes).
struct WireHeaderOnly: Decodable {
    var header: ResponseHeader

    enum CodingKeys: String, CodingKey { case header }

    init(from decoder: any Decoder) throws {
        header = try decoder.container(keyedBy: CodingKeys.self).header(.header)
    }
}

struct WireLeaseGrant: Decodable {
    var grant: LeaseGrant
    var error: String

    enum CodingKeys: String, CodingKey {
        case header, error
        case id = "ID"
        case ttl = "TTL"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        grant = LeaseGrant(header: try c.header(.header), id: try c.int64(.id), ttl: try c.int64(.ttl))
        error = try c.decodeIfPresent(String.self, forKey: .error) ?? ""
    }
}

struct WireLeaseTTL: Decodable {
    var ttl: LeaseTTL

    enum CodingKeys: String, CodingKey {
        case header, keys, grantedTTL
        case id = "ID"
        case ttl = "TTL"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let keys = try c.list(String.self, .keys).map { Array(Data(base64Encoded: $0) ?? Data()) }
        ttl = LeaseTTL(
            header: try c.header(.header), id: try c.int64(.id), ttl: try c.int64(.ttl), grantedTTL: try c.int64(.grantedTTL),
            keys: keys)
    }
}

/// A streamed answer: `{"result": …}` or `{"error": {"grpc_code": …, "message": …}}`.
struct WireStreamItem<Result: Decodable>: Decodable {
    var result: Result?
    var error: StreamError?

    struct StreamError: Decodable {
        var code: Int
        var message: String

        enum CodingKeys: String, CodingKey {
            case grpcCode = "grpc_code"
            case message
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            code = try c.decodeIfPresent(Int.self, forKey: .grpcCode) ?? 0
            message = try c.decodeIfPresent(String.self, forKey: .message) ?? ""
        }
    }
}

struct WireWatchResponse: Decodable {
    var response: WatchResponse
    var canceled: Bool
    var compactRevision: Int64
    var cancelReason: String

    enum CodingKeys: String, CodingKey {
        case header, created, canceled, events
        case compactRevision = "compact_revision"
        case cancelReason = "cancel_reason"
    }

    struct Event: Decodable {
        var event: WatchEvent

        enum CodingKeys: String, CodingKey {
            case type, kv
            case prevKV = "prev_kv"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let kind: WatchEvent.Kind
            if let name = try? c.decodeIfPresent(String.self, forKey: .type) {
                kind = name == "DELETE" ? .delete : .put
            } else {
                kind = (try c.decodeIfPresent(Int.self, forKey: .type) ?? 0) == 1 ? .delete : .put
            }
            guard let kv = try c.decodeIfPresent(WireKeyValue.self, forKey: .kv)?.kv else {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "a watch event without a key"))
            }
            event = WatchEvent(kind: kind, kv: kv, prevKV: try c.decodeIfPresent(WireKeyValue.self, forKey: .prevKV)?.kv)
        }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        response = WatchResponse(
            header: try c.header(.header), events: try c.list(Event.self, .events).map(\.event), created: try c.bool(.created))
        canceled = try c.bool(.canceled)
        compactRevision = try c.int64(.compactRevision)
        cancelReason = try c.decodeIfPresent(String.self, forKey: .cancelReason) ?? ""
    }
}

struct WireStatus: Decodable {
    var status: MemberStatus

    enum CodingKeys: String, CodingKey {
        case header, version, dbSize, dbSizeInUse, leader, raftIndex, raftTerm, raftAppliedIndex, errors, isLearner
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        status = MemberStatus(
            header: try c.header(.header), version: try c.decodeIfPresent(String.self, forKey: .version) ?? "",
            dbSize: try c.int64(.dbSize), dbSizeInUse: try c.int64(.dbSizeInUse), leader: try c.uint64(.leader),
            raftIndex: try c.uint64(.raftIndex), raftTerm: try c.uint64(.raftTerm),
            raftAppliedIndex: try c.uint64(.raftAppliedIndex), errors: try c.list(String.self, .errors),
            isLearner: try c.bool(.isLearner))
    }
}

struct WireMemberList: Decodable {
    var header: ResponseHeader
    var members: [Member]

    enum CodingKeys: String, CodingKey { case header, members }

    struct WireMember: Decodable {
        var member: Member

        enum CodingKeys: String, CodingKey {
            case id = "ID"
            case name, peerURLs, clientURLs, isLearner
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            member = Member(
                id: try c.uint64(.id), name: try c.decodeIfPresent(String.self, forKey: .name) ?? "",
                peerURLs: try c.list(String.self, .peerURLs), clientURLs: try c.list(String.self, .clientURLs),
                isLearner: try c.bool(.isLearner))
        }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        header = try c.header(.header)
        members = try c.list(WireMember.self, .members).map(\.member)
    }
}

struct WireAuthenticate: Decodable {
    var token: String
}

// MARK: Requests

// Field names are rpc.proto's, as the gateway reads them (hence snake_case here).

struct WireRangeRequest: Encodable {
    var key: String
    var range_end: String?
    var limit: String?
    var revision: String?
    var serializable: Bool?
    var keys_only: Bool?
    var count_only: Bool?
}

struct WirePutRequest: Encodable {
    var key: String
    var value: String
    var lease: String?
    var prev_kv: Bool?
}

struct WireDeleteRequest: Encodable {
    var key: String
    var range_end: String?
    var prev_kv: Bool?
}

struct WireCompare: Encodable {
    var result: String
    var target: String
    var key: String
    var range_end: String?
    var version: String?
    var create_revision: String?
    var mod_revision: String?
    var value: String?
    var lease: String?

    init(_ compare: Compare) {
        switch compare.op {
        case .equal: result = "EQUAL"
        case .notEqual: result = "NOT_EQUAL"
        case .less: result = "LESS"
        case .greater: result = "GREATER"
        }
        key = base64(compare.key)
        range_end = compare.rangeEnd.map(base64)
        switch compare.target {
        case .version(let v):
            target = "VERSION"
            version = String(v)
        case .createRevision(let v):
            target = "CREATE"
            create_revision = String(v)
        case .modRevision(let v):
            target = "MOD"
            mod_revision = String(v)
        case .value(let v):
            target = "VALUE"
            value = base64(v)
        case .lease(let v):
            target = "LEASE"
            lease = String(v)
        }
    }
}

struct WireRequestOp: Encodable {
    var request_range: WireRangeRequest?
    var request_put: WirePutRequest?
    var request_delete_range: WireDeleteRequest?

    init(_ op: TxnOp) {
        switch op {
        case .put(let key, let value, let lease, let prevKV):
            request_put = WirePutRequest(
                key: base64(key), value: base64(value), lease: lease == 0 ? nil : String(lease), prev_kv: prevKV ? true : nil)
        case .delete(let key, let rangeEnd, let prevKV):
            request_delete_range = WireDeleteRequest(key: base64(key), range_end: rangeEnd.map(base64), prev_kv: prevKV ? true : nil)
        case .range(let key, let rangeEnd, let limit, let keysOnly, let countOnly):
            request_range = WireRangeRequest(
                key: base64(key), range_end: rangeEnd.map(base64), limit: limit == 0 ? nil : String(limit),
                keys_only: keysOnly ? true : nil, count_only: countOnly ? true : nil)
        }
    }
}

struct WireTxnRequest: Encodable {
    var compare: [WireCompare]
    var success: [WireRequestOp]
    var failure: [WireRequestOp]
}

struct WireCompactionRequest: Encodable {
    var revision: String
    var physical: Bool?
}

struct WireLeaseGrantRequest: Encodable {
    var TTL: String
    var ID: String?
}

struct WireLeaseIDRequest: Encodable {
    var ID: String
}

struct WireLeaseTimeToLiveRequest: Encodable {
    var ID: String
    var keys: Bool?
}

struct WireWatchRequest: Encodable {
    var create_request: Create

    struct Create: Encodable {
        var key: String
        var range_end: String?
        var start_revision: String?
        var progress_notify: Bool?
        var prev_kv: Bool?
    }
}

struct WireEmpty: Encodable {}

struct WireAuthUserAdd: Encodable {
    var name: String
    var password: String
    var options: Options?

    struct Options: Encodable {
        var no_password: Bool
    }
}

struct WireAuthName: Encodable {
    var name: String
}

struct WireAuthenticateRequest: Encodable {
    var name: String
    var password: String
}

struct WireAuthUserGrantRole: Encodable {
    var user: String
    var role: String
}

struct WireAuthRoleGrant: Encodable {
    var name: String
    var perm: Perm

    struct Perm: Encodable {
        var permType: String
        var key: String
        var range_end: String?
    }
}
