import Foundation

/// How an `EtcdClient` reaches the cluster.
public struct EtcdConfiguration: Sendable {
    /// The members' client URLs (`http://127.0.0.1:2379`, `https://…` with `tls`).
    /// The client tries them in turn and sticks to the one that answered.
    public var endpoints: [URL]
    /// Certificates for `https` endpoints, nil for plain HTTP.
    public var tls: EtcdTLS?
    /// The etcd user the client is, once auth is enabled; nil for none. Through the
    /// gateway this is the only way to be a user: etcd 3.4's gateway cannot pass a
    /// client certificate's CN on as the user, and once auth is enabled it refuses
    /// every certificate that has a CN. So with `--client-cert-auth`, give the client
    /// a certificate without a CN (it still proves the client holds one the CA
    /// signed) and these credentials.
    public var credentials: EtcdCredentials?
    /// How long the client waits.
    public var timeouts: Timeouts
    /// Whether every call asks for a member with a leader (the gRPC metadata
    /// `hasleader: true`, sent through the gateway as the header
    /// `Grpc-Metadata-hasleader: true`). A member without one refuses at once and the
    /// client tries the next, instead of a write waiting there until it times out or
    /// a serializable read answering from a member cut off from the cluster.
    public var requireLeader: Bool = true

    /// How long the client waits.
    public struct Timeouts: Sendable {
        /// To connect to one member.
        public var connect: Duration = .seconds(2)
        /// For one member's answer to one call, once sent.
        public var request: Duration = .seconds(5)
        /// How long one call keeps trying members that cannot take it now (refused
        /// connections, no leader during an election) before it fails as
        /// `EtcdError.unavailable`.
        public var failover: Duration = .seconds(10)

        /// Timeouts; the defaults suit a loaded machine.
        public init(connect: Duration = .seconds(2), request: Duration = .seconds(5), failover: Duration = .seconds(10)) {
            self.connect = connect
            self.request = request
            self.failover = failover
        }
    }

    /// A configuration for these endpoints.
    public init(endpoints: [URL], tls: EtcdTLS? = nil, credentials: EtcdCredentials? = nil, timeouts: Timeouts = Timeouts()) {
        self.endpoints = endpoints
        self.tls = tls
        self.credentials = credentials
        self.timeouts = timeouts
    }

    /// A configuration for endpoints written as text (`http://127.0.0.1:2379`, or
    /// `127.0.0.1:2379`, taken as `http`, or `https` with `tls`); throws
    /// `EtcdError.invalid` naming the first one that is not an endpoint.
    public init(
        endpoints: [String], tls: EtcdTLS? = nil, credentials: EtcdCredentials? = nil, timeouts: Timeouts = Timeouts()
    ) throws(EtcdError) {
        var urls: [URL] = []
        for text in endpoints {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            let full = trimmed.contains("://") ? trimmed : (tls == nil ? "http://" : "https://") + trimmed
            guard let url = URL(string: full), let scheme = url.scheme, scheme == "http" || scheme == "https",
                url.host != nil, url.path.isEmpty || url.path == "/"
            else {
                throw .invalid(message: "\(text) is not an etcd endpoint (expected http://HOST:PORT or https://HOST:PORT)")
            }
            urls.append(url)
        }
        self.init(endpoints: urls, tls: tls, credentials: credentials, timeouts: timeouts)
    }
}

/// The files of etcdctl's `--cacert`, `--cert` and `--key`: the CA that signed the
/// members' certificates, and this client's certificate and key (PEM). With
/// `--client-cert-auth`, etcd takes the certificate's CN as the user name.
public struct EtcdTLS: Sendable {
    /// The CA certificate file that verifies the members.
    public var caFile: String
    /// The client certificate file, nil for none.
    public var certificateFile: String?
    /// The client key file, nil for none.
    public var keyFile: String?

    /// Certificates from these files.
    public init(caFile: String, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

/// An etcd user and its password (`/v3/auth/authenticate`); the client sends the
/// token it gets for them with every call, and gets a new one when it expires.
public struct EtcdCredentials: Sendable {
    /// The user's name.
    public var user: String
    /// The user's password.
    public var password: String

    /// Credentials.
    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }
}
