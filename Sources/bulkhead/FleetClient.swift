#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AsyncHTTPClient
import BulkheadCore
import Etcd
import EtcdStore
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Store
import UnixHTTP

/// Where a client command acts: one host, by its data directory (the sockets in
/// `run/`), or with `--etcd` the fleet whose store is in etcd, through the control
/// process that leads it.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "The data directory: store, run/ sockets, logs.")
    var data: String = "./.bulkhead"
    @OptionGroup var etcd: EtcdOptions

    /// The data directory is checked (see `DataOptions`) only when it is used: not with --etcd.
    mutating func validate() throws {
        guard etcd.endpoints == nil else { return }
        data = try DataOptions.verified(data)
    }
}

/// A client command's way to a fleet: the control process that leads it (read from
/// `driver/leader` in the store), reached over TCP with an operator session opened
/// in the store for this command. Whoever may write the fleet's keys in etcd is its
/// operator, so `--etcd` needs no admin token: the session's key (`session/HASH`)
/// lives on a lease of 60 s, revoked when the command is done with it (a command
/// that fails leaves it to expire).
final class FleetConnection {
    let store: EtcdStore
    let leader: ControlListing
    let token: String
    let lease: Int64

    /// Opens a session for this user on `options`'s fleet; a fleet that cannot be read,
    /// or that no control process leads, ends the command with the reason.
    init(_ options: EtcdOptions) {
        let configuration: EtcdConfiguration
        do {
            guard let opened = try options.configuration() else { fail("--etcd names no endpoint") }
            configuration = opened
        } catch {
            fail("--etcd: \(error)")
        }
        let actor = Self.actor
        let token = TokenHash.newToken(prefix: TokenPrefix.operatorSession)
        let opened = Self.blocking {
            let client = try EtcdClient(configuration: configuration)
            let store = try EtcdStore(client: client, prefix: options.prefix)
            guard let leader = try await store.leader() else { return (store, Optional<ControlListing>.none, Int64(0)) }
            let lease = try await store.openSession(token: token, actor: actor, ttl: 60)
            return (store, Optional(leader), lease)
        }
        switch opened {
        case .failure(let error):
            fail("cannot use the fleet's store at \(options.endpoints ?? ""): \(error)")
        case .success((_, nil, _)):
            fail("no control process leads the fleet under \(options.prefix) (start `bulkhead control --etcd …`, or wait for its election)")
        case .success(let (store, leader?, lease)):
            self.store = store
            self.leader = leader
            self.token = token
            self.lease = lease
        }
    }

    /// Who this command acts as, for the audit log: user and machine.
    static var actor: String {
        "\(ProcessInfo.processInfo.environment["USER"] ?? "uid \(getuid())")@\(ProcessInfo.processInfo.hostName)"
    }

    /// The fleet's store, for the commands that go straight to etcd (fleet-wide break
    /// glass, events); one that cannot be opened ends the command with the reason.
    static func store(_ options: EtcdOptions) -> EtcdStore {
        do {
            guard let configuration = try options.configuration() else { fail("--etcd names no endpoint") }
            return try EtcdStore(client: try EtcdClient(configuration: configuration), prefix: options.prefix)
        } catch {
            fail("--etcd: \(error)")
        }
    }

    /// Runs a store call; a failure ends the command, naming `what`.
    @discardableResult
    static func run<T>(_ what: String, _ body: () throws -> T) -> T {
        do {
            return try body()
        } catch {
            fail("cannot \(what): \(error)")
        }
    }

    /// Sends one request to the leader; throws `Unreachable` when it does not answer.
    func send(_ method: HTTPMethod, _ uri: String, body: Data?, timeout: Int64) throws -> UnixHTTPClient.Answer {
        do {
            var request = try HTTPClient.Request(url: "http://\(leader.api)\(uri)", method: method)
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            if let body {
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .data(body)
            }
            let response = try HTTPClient.shared.execute(request: request, deadline: .now() + .seconds(timeout)).wait()
            return UnixHTTPClient.Answer(status: response.status.code, body: response.body.map { Data(buffer: $0) } ?? Data())
        } catch {
            throw UnixHTTPClient.Unreachable(description: "\(error)")
        }
    }

    /// The session ends with the command (a command that fails leaves it to its lease).
    deinit {
        _ = Self.blocking { [store, lease] in await store.closeSession(lease: lease) }
    }

    /// Runs `body` in a task and waits for it (the CLI's main thread is not Swift concurrency's).
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Task.detached {
            do {
                box.result = .success(try await body())
            } catch {
                box.result = .failure(error)
            }
            done.signal()
        }
        done.wait()
        return box.result ?? .failure(CancellationError())
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var result: Result<T, any Error>?
    }
}
