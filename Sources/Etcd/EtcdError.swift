/// Why an etcd call failed, in etcd's terms: never an HTTP status.
///
/// The gateway answers errors as `{"error": …, "code": N}` (N is the gRPC status code)
/// or, inside a stream, as `{"error": {"grpc_code": N, "message": …}}`; both are read
/// into these cases, by etcd's message where the code alone is ambiguous (code 14,
/// unavailable, means "no leader" as well as "request timed out").
public enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No endpoint answered (or each refused the call as unavailable) before the
    /// failover deadline; one entry per endpoint tried, with its last reason.
    case unavailable([EndpointFailure])
    /// The revision asked for was compacted away. `compactRevision` is the oldest
    /// revision still kept when etcd said it (a watch's cancel says; a range does not).
    case compacted(compactRevision: Int64?)
    /// The revision asked for is newer than the store's.
    case futureRevision
    /// The call was sent but got no answer in time: a write may or may not have been
    /// applied. `endpoint` is the member that did not answer.
    case timeout(endpoint: String)
    /// The member has no leader or lost it during the call (and so did every other
    /// member tried); a require-leader watch ends with this when its member loses the
    /// leader.
    case noLeader
    /// The user (or the client certificate's CN) may not do this on these keys.
    case permissionDenied
    /// Authentication failed: a wrong user or password, a missing or expired token.
    case authFailed(message: String)
    /// The lease does not exist (expired or revoked).
    case leaseNotFound
    /// The request is larger than the member accepts (etcd's `--max-request-bytes`,
    /// 1.5 MiB by default, counted after the value is decoded from base64).
    case requestTooLarge(message: String)
    /// Any other error etcd answered: its gRPC status code and message.
    case server(code: Int, message: String)
    /// The answer could not be read (not the JSON the gateway sends), or a local
    /// setting is wrong (an endpoint that is not a URL, an unreadable certificate).
    case invalid(message: String)
    /// The client was shut down.
    case shutDown
    /// The task that made the call was cancelled.
    case cancelled

    /// One endpoint that failed, and why.
    public struct EndpointFailure: Sendable, Equatable, CustomStringConvertible {
        /// The endpoint, as configured (`http://127.0.0.1:2379`).
        public var endpoint: String
        /// What happened there, for a person.
        public var reason: String

        /// An endpoint's failure.
        public init(endpoint: String, reason: String) {
            self.endpoint = endpoint
            self.reason = reason
        }

        public var description: String { "\(endpoint): \(reason)" }
    }

    public var description: String {
        switch self {
        case .unavailable(let failures):
            let list = failures.map(\.description).joined(separator: "; ")
            return "etcd is unavailable: no endpoint answered (\(list)); check that the members run and have a leader"
        case .compacted(let revision):
            if let revision {
                return "etcd compacted the revision asked for (oldest kept: \(revision)); read again at the current revision"
            }
            return "etcd compacted the revision asked for; read again at the current revision"
        case .futureRevision:
            return "etcd has no such revision yet (asked for a revision newer than the store's)"
        case .timeout(let endpoint):
            return "etcd at \(endpoint) did not answer in time; a write may or may not have been applied"
        case .noLeader:
            return "etcd has no leader (the member lost its quorum)"
        case .permissionDenied:
            return "etcd denied permission for this operation on these keys"
        case .authFailed(let message):
            return "etcd authentication failed: \(message)"
        case .leaseNotFound:
            return "etcd has no such lease (it expired or was revoked)"
        case .requestTooLarge(let message):
            return "the request is larger than etcd accepts (\(message)); split the value"
        case .server(let code, let message):
            return "etcd answered an error (code \(code)): \(message)"
        case .invalid(let message):
            return "etcd client: \(message)"
        case .shutDown:
            return "the etcd client was shut down"
        case .cancelled:
            return "the etcd call was cancelled"
        }
    }
}

// MARK: Reading etcd's errors

/// An error as the gateway sends it, before it is classified.
struct GatewayError: Sendable {
    var code: Int
    var message: String

    /// gRPC status codes etcd uses.
    enum Code {
        static let invalidArgument = 3
        static let notFound = 5
        static let permissionDenied = 7
        static let resourceExhausted = 8
        static let failedPrecondition = 9
        static let outOfRange = 11
        static let unavailable = 14
        static let unauthenticated = 16
    }

    /// What the error means to the caller, and whether another member could answer.
    enum Meaning {
        /// Not applied, and another member may do it: try the next endpoint.
        case tryAnotherMember(EtcdError)
        /// The answer to give the caller.
        case final(EtcdError)
    }

    /// What this error, answered by `endpoint`, means.
    func meaning(at endpoint: String) -> Meaning {
        // etcd's messages are stable strings (rpctypes); match on them where the
        // code says too little.
        let text = message
        if text.contains("no leader") || text.contains("leader changed") || text.contains("not capable") {
            return .tryAnotherMember(.noLeader)
        }
        if text.contains("request timed out") {
            return .final(.timeout(endpoint: endpoint))
        }
        if text.contains("required revision has been compacted") { return .final(.compacted(compactRevision: nil)) }
        if text.contains("required revision is a future revision") { return .final(.futureRevision) }
        if text.contains("requested lease not found") { return .final(.leaseNotFound) }
        if text.contains("request is too large") || text.contains("larger than max") {
            return .final(.requestTooLarge(message: message))
        }
        if text.contains("permission denied") || code == Code.permissionDenied { return .final(.permissionDenied) }
        if text.contains("authentication failed") || text.contains("invalid auth token") || text.contains("user name is empty")
            || text.contains("user name not found") || code == Code.unauthenticated
        {
            return .final(.authFailed(message: message))
        }
        if code == Code.unavailable { return .tryAnotherMember(.server(code: code, message: message)) }
        return .final(.server(code: code, message: message))
    }
}
