import ArgumentParser
import Etcd
import Foundation

/// Where the fleet's control store is: an etcd cluster, and how to reach it (etcdctl's
/// names for the TLS files). Absent `--etcd`, the store is the data directory's SQLite file.
struct EtcdOptions: ParsableArguments {
    @Option(name: .customLong("etcd"), help: "etcd client URLs, comma-separated: the fleet's control store (default: none, DATA/bulkhead.sqlite).")
    var endpoints: String?

    @Option(name: .customLong("etcd-prefix"), help: "The key prefix of this fleet's store in etcd.")
    var prefix: String = "/bulkhead/"

    @Option(name: .customLong("etcd-cacert"), help: "The CA that signed the etcd members' certificates (PEM).")
    var caFile: String?

    @Option(name: .customLong("etcd-cert"), help: "This client's certificate for etcd (PEM).")
    var certificateFile: String?

    @Option(name: .customLong("etcd-key"), help: "The key of --etcd-cert (PEM).")
    var keyFile: String?

    @Option(name: .customLong("etcd-user"), help: "The etcd user to authenticate as (with --etcd-password-file).")
    var user: String?

    @Option(name: .customLong("etcd-password-file"), help: "A file holding the password of --etcd-user.")
    var passwordFile: String?

    mutating func validate() throws {
        guard endpoints != nil else {
            let given = [caFile, certificateFile, keyFile, user, passwordFile].contains { $0 != nil }
            if given { throw ValidationError("the --etcd-… options need --etcd") }
            return
        }
        if (certificateFile == nil) != (keyFile == nil) {
            throw ValidationError("--etcd-cert and --etcd-key go together")
        }
        if (user == nil) != (passwordFile == nil) {
            throw ValidationError("--etcd-user and --etcd-password-file go together")
        }
        guard prefix.hasPrefix("/"), prefix.count > 1 else {
            throw ValidationError("--etcd-prefix must start with / and name something (got \(prefix))")
        }
    }

    /// The client configuration, or nil without `--etcd`.
    func configuration() throws -> EtcdConfiguration? {
        guard let endpoints else { return nil }
        let urls = endpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let tls = caFile.map { EtcdTLS(caFile: $0, certificateFile: certificateFile, keyFile: keyFile) }
        var credentials: EtcdCredentials?
        if let user, let passwordFile {
            let password = try String(contentsOfFile: passwordFile, encoding: .utf8).trimmingCharacters(in: .newlines)
            credentials = EtcdCredentials(user: user, password: password)
        }
        return try EtcdConfiguration(endpoints: urls, tls: tls, credentials: credentials)
    }
}
