import Foundation

// MARK: Bytes

/// What etcd keys and values are made of: bytes. Strings (as UTF-8), byte arrays and
/// `Data` can be passed wherever the client takes a key or a value.
public protocol EtcdBytes: Sendable {
    /// The bytes etcd stores.
    var etcdBytes: [UInt8] { get }
}

extension String: EtcdBytes {
    /// The string's UTF-8.
    public var etcdBytes: [UInt8] { Array(utf8) }
}

extension Array: EtcdBytes where Element == UInt8 {
    /// The array itself.
    public var etcdBytes: [UInt8] { self }
}

extension Data: EtcdBytes {
    /// The data's bytes.
    public var etcdBytes: [UInt8] { Array(self) }
}

/// Key ranges as etcd spells them.
public enum EtcdKeyRange {
    /// The end of the range that holds every key starting with `prefix`: the prefix
    /// with its last byte below 0xff incremented (and what follows it dropped). A
    /// prefix of only 0xff bytes, or an empty one, has no such end: `[0]`, which etcd
    /// reads as "every key from the start key on".
    public static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}

// MARK: Answers

/// The header etcd puts on every answer.
public struct ResponseHeader: Sendable, Equatable {
    /// The cluster's id.
    public var clusterID: UInt64
    /// The id of the member that answered.
    public var memberID: UInt64
    /// The store's revision when the answer was made (for a write: its revision).
    public var revision: Int64
    /// The raft term of the member that answered.
    public var raftTerm: UInt64

    /// A header.
    public init(clusterID: UInt64, memberID: UInt64, revision: Int64, raftTerm: UInt64) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.revision = revision
        self.raftTerm = raftTerm
    }
}

/// One key and its value, as stored at some revision.
public struct KeyValue: Sendable, Equatable {
    /// The key.
    public var key: [UInt8]
    /// The value (empty when asked for keys only).
    public var value: [UInt8]
    /// The revision that created the key (since its last delete).
    public var createRevision: Int64
    /// The revision of its last change.
    public var modRevision: Int64
    /// How often it was written since it was created (1 after the create); 0 for a
    /// deleted key in a watch event.
    public var version: Int64
    /// The lease it is attached to, 0 for none.
    public var lease: Int64

    /// A key-value.
    public init(key: [UInt8], value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }

    /// The key as UTF-8 text (invalid bytes replaced).
    public var keyString: String { String(decoding: key, as: UTF8.self) }
    /// The value as UTF-8 text (invalid bytes replaced).
    public var valueString: String { String(decoding: value, as: UTF8.self) }
}

/// The answer to a range read.
public struct RangeResponse: Sendable, Equatable {
    /// The answer's header; `header.revision` is the revision read.
    public var header: ResponseHeader
    /// The keys found, in key order (none when asked for the count only).
    public var kvs: [KeyValue]
    /// Whether more keys are in the range than the limit let through.
    public var more: Bool
    /// How many keys are in the range (all of them, not only those returned).
    public var count: Int64

    /// A range answer.
    public init(header: ResponseHeader, kvs: [KeyValue], more: Bool, count: Int64) {
        self.header = header
        self.kvs = kvs
        self.more = more
        self.count = count
    }

    /// The first key found: for `get`, the key itself, or nil when it does not exist.
    public var first: KeyValue? { kvs.first }
}

/// The answer to a put.
public struct PutResponse: Sendable, Equatable {
    /// The answer's header; `header.revision` is the put's revision.
    public var header: ResponseHeader
    /// The key as it was before, when asked for (`prevKV: true`) and it existed.
    public var prevKV: KeyValue?

    /// A put answer.
    public init(header: ResponseHeader, prevKV: KeyValue?) {
        self.header = header
        self.prevKV = prevKV
    }
}

/// The answer to a delete.
public struct DeleteResponse: Sendable, Equatable {
    /// The answer's header.
    public var header: ResponseHeader
    /// How many keys were deleted.
    public var deleted: Int64
    /// The deleted keys as they were, when asked for (`prevKV: true`).
    public var prevKVs: [KeyValue]

    /// A delete answer.
    public init(header: ResponseHeader, deleted: Int64, prevKVs: [KeyValue]) {
        self.header = header
        self.deleted = deleted
        self.prevKVs = prevKVs
    }
}

// MARK: Transactions

/// How a transaction compares.
public enum CompareOperator: Sendable, Equatable {
    /// Equal to.
    case equal
    /// Not equal to.
    case notEqual
    /// Less than.
    case less
    /// Greater than.
    case greater
}

/// One condition of a transaction, on one key (or a range: `rangeEnd`). A key that
/// does not exist has version, create and mod revision 0, lease 0, and compares
/// with a value as no value at all (so `.value(k, .equal, "")` is false for it).
public struct Compare: Sendable, Equatable {
    /// What is compared.
    public enum Target: Sendable, Equatable {
        /// The key's version (0: it does not exist).
        case version(Int64)
        /// The revision that created the key (0: it does not exist).
        case createRevision(Int64)
        /// The revision of its last change.
        case modRevision(Int64)
        /// Its value.
        case value([UInt8])
        /// Its lease (0: none).
        case lease(Int64)
    }

    /// The key compared.
    public var key: [UInt8]
    /// With `rangeEnd`, every key in `[key, rangeEnd)` must compare true.
    public var rangeEnd: [UInt8]?
    /// How.
    public var op: CompareOperator
    /// What, against what.
    public var target: Target

    /// A condition.
    public init(key: some EtcdBytes, rangeEnd: (any EtcdBytes)? = nil, _ op: CompareOperator, _ target: Target) {
        self.key = key.etcdBytes
        self.rangeEnd = rangeEnd?.etcdBytes
        self.op = op
        self.target = target
    }

    /// The key's version compared (0 means it does not exist).
    public static func version(_ key: some EtcdBytes, _ op: CompareOperator, _ version: Int64) -> Compare {
        Compare(key: key, op, .version(version))
    }

    /// The key's create revision compared (0 means it does not exist).
    public static func createRevision(_ key: some EtcdBytes, _ op: CompareOperator, _ revision: Int64) -> Compare {
        Compare(key: key, op, .createRevision(revision))
    }

    /// The key's last-change revision compared.
    public static func modRevision(_ key: some EtcdBytes, _ op: CompareOperator, _ revision: Int64) -> Compare {
        Compare(key: key, op, .modRevision(revision))
    }

    /// The key's value compared.
    public static func value(_ key: some EtcdBytes, _ op: CompareOperator, _ value: some EtcdBytes) -> Compare {
        Compare(key: key, op, .value(value.etcdBytes))
    }

    /// The key's lease compared (0 means none).
    public static func lease(_ key: some EtcdBytes, _ op: CompareOperator, _ lease: Int64) -> Compare {
        Compare(key: key, op, .lease(lease))
    }
}

/// One operation of a transaction.
public enum TxnOp: Sendable, Equatable {
    /// A put.
    case put(key: [UInt8], value: [UInt8], lease: Int64, prevKV: Bool)
    /// A delete of one key, or of `[key, rangeEnd)`.
    case delete(key: [UInt8], rangeEnd: [UInt8]?, prevKV: Bool)
    /// A read of one key, or of `[key, rangeEnd)`, at the transaction's revision.
    case range(key: [UInt8], rangeEnd: [UInt8]?, limit: Int64, keysOnly: Bool, countOnly: Bool)

    /// Puts `value` at `key`, attached to `lease` when given.
    public static func put(_ key: some EtcdBytes, _ value: some EtcdBytes, lease: Int64 = 0, prevKV: Bool = false) -> TxnOp {
        .put(key: key.etcdBytes, value: value.etcdBytes, lease: lease, prevKV: prevKV)
    }

    /// Deletes `key`.
    public static func delete(_ key: some EtcdBytes, prevKV: Bool = false) -> TxnOp {
        .delete(key: key.etcdBytes, rangeEnd: nil, prevKV: prevKV)
    }

    /// Deletes every key starting with `prefix`.
    public static func delete(prefix: some EtcdBytes, prevKV: Bool = false) -> TxnOp {
        let bytes = prefix.etcdBytes
        return .delete(key: bytes.isEmpty ? [0] : bytes, rangeEnd: EtcdKeyRange.prefixEnd(bytes), prevKV: prevKV)
    }

    /// Reads `key`.
    public static func get(_ key: some EtcdBytes) -> TxnOp {
        .range(key: key.etcdBytes, rangeEnd: nil, limit: 0, keysOnly: false, countOnly: false)
    }

    /// Reads every key starting with `prefix` (at most `limit`, 0 for no limit).
    public static func range(prefix: some EtcdBytes, limit: Int64 = 0, keysOnly: Bool = false, countOnly: Bool = false) -> TxnOp {
        let bytes = prefix.etcdBytes
        return .range(
            key: bytes.isEmpty ? [0] : bytes, rangeEnd: EtcdKeyRange.prefixEnd(bytes), limit: limit, keysOnly: keysOnly,
            countOnly: countOnly)
    }
}

/// The answer of one operation of a transaction, in the order of the branch run.
public enum TxnOpResponse: Sendable, Equatable {
    /// A put's answer.
    case put(PutResponse)
    /// A delete's answer.
    case delete(DeleteResponse)
    /// A read's answer.
    case range(RangeResponse)

    /// The read's answer, when this is one.
    public var range: RangeResponse? {
        if case .range(let response) = self { return response }
        return nil
    }
}

/// The answer to a transaction.
public struct TxnResponse: Sendable, Equatable {
    /// The answer's header; `header.revision` is the transaction's revision (the
    /// revision of its writes, when it wrote).
    public var header: ResponseHeader
    /// Whether every comparison held (so the success branch ran).
    public var succeeded: Bool
    /// One answer per operation of the branch that ran.
    public var responses: [TxnOpResponse]

    /// A transaction answer.
    public init(header: ResponseHeader, succeeded: Bool, responses: [TxnOpResponse]) {
        self.header = header
        self.succeeded = succeeded
        self.responses = responses
    }
}

// MARK: Leases

/// A granted lease.
public struct LeaseGrant: Sendable, Equatable {
    /// The answer's header.
    public var header: ResponseHeader
    /// The lease's id.
    public var id: Int64
    /// Its time to live, in seconds, as granted (etcd may raise a short one to its
    /// minimum, about 1.5 election timeouts).
    public var ttl: Int64
}

/// A lease's time to live, as a keep-alive or a time-to-live query answered it.
public struct LeaseTTL: Sendable, Equatable {
    /// The answer's header.
    public var header: ResponseHeader
    /// The lease's id.
    public var id: Int64
    /// Seconds left; 0 or less means the lease is gone (expired or revoked).
    public var ttl: Int64
    /// The TTL it was granted with (time-to-live queries only; 0 for a keep-alive).
    public var grantedTTL: Int64
    /// The keys attached to it, when asked for.
    public var keys: [[UInt8]]

    /// Whether the lease still exists.
    public var isAlive: Bool { ttl > 0 }
}

// MARK: Watch

/// One change a watch saw.
public struct WatchEvent: Sendable, Equatable {
    /// A put or a delete.
    public enum Kind: Sendable, Equatable {
        /// The key was written.
        case put
        /// The key was deleted (or its lease expired).
        case delete
    }

    /// A put or a delete.
    public var kind: Kind
    /// The key after the change; for a delete, only its key and `modRevision` (the
    /// delete's revision).
    public var kv: KeyValue
    /// The key before the change, when the watch asked for it (`prevKV: true`).
    public var prevKV: KeyValue?
}

/// One answer of a watch: the watch was created, some events happened, or (with
/// progress notifications) nothing happened up to `header.revision`.
public struct WatchResponse: Sendable, Equatable {
    /// The answer's header: every change up to `header.revision` was sent.
    public var header: ResponseHeader
    /// The changes, in revision order (empty for a created or progress answer).
    public var events: [WatchEvent]
    /// Whether this is the first answer, saying the watch exists.
    public var created: Bool

    /// Whether this answer only says how far the watch got (no events).
    public var isProgressNotification: Bool { events.isEmpty && !created }
}

// MARK: Cluster

/// A member's status (`/v3/maintenance/status`).
public struct MemberStatus: Sendable, Equatable {
    /// The answer's header (its `memberID` is the member asked).
    public var header: ResponseHeader
    /// The member's etcd version.
    public var version: String
    /// The backend database's size in bytes.
    public var dbSize: Int64
    /// The size in use (the rest is free pages a defragment would give back).
    public var dbSizeInUse: Int64
    /// The id of the leader this member knows, 0 for none.
    public var leader: UInt64
    /// The member's raft index.
    public var raftIndex: UInt64
    /// The member's raft term.
    public var raftTerm: UInt64
    /// The raft index the member applied.
    public var raftAppliedIndex: UInt64
    /// Alarms and errors the member reports (e.g. `NOSPACE`).
    public var errors: [String]
    /// Whether the member is a learner.
    public var isLearner: Bool

    /// Whether this member is the leader.
    public var isLeader: Bool { leader != 0 && leader == header.memberID }
}

/// A member of the cluster (`/v3/cluster/member/list`).
public struct Member: Sendable, Equatable {
    /// The member's id.
    public var id: UInt64
    /// Its name (empty until it started).
    public var name: String
    /// The URLs its peers reach it on.
    public var peerURLs: [String]
    /// The URLs clients reach it on.
    public var clientURLs: [String]
    /// Whether it is a learner.
    public var isLearner: Bool
}

// MARK: Auth

/// What a role may do on a key range.
public enum Permission: Sendable, Equatable {
    /// Read only.
    case read
    /// Write only.
    case write
    /// Read and write.
    case readWrite
}
