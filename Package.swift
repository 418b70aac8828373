// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "bulkhead",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "bulkhead", targets: ["bulkhead"]),
        .executable(name: "bulkhead-load", targets: ["BulkheadLoad"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
    ],
    targets: [
        // MARK: Lua

        /// The system's Lua 5.4 (Debian: liblua5.4-dev), found through pkg-config.
        .systemLibrary(
            name: "CLua",
            pkgConfig: "lua5.4",
            providers: [.apt(["liblua5.4-dev"])]
        ),
        /// C for what Swift must not or cannot do with Lua: the instruction hook,
        /// the allocator, everything that raises a Lua error (it longjmps), macros.
        .target(
            name: "CLuaSandbox",
            dependencies: ["CLua", "CBulkheadPosix"]
        ),
        /// One sandboxed `lua_State` per script, its limits, request and response
        /// conversion. No networking.
        .target(
            name: "LuaSandbox",
            dependencies: ["CLuaSandbox", "CLua"]
        ),

        // MARK: Shared

        /// A strict HTTP/1.1 request parser that works in place on bytes, and the
        /// response writer. No dependencies, so it can be fuzzed on its own.
        .target(name: "HTTPWire"),
        /// POSIX calls Swift cannot make itself: SCM_RIGHTS (CMSG_* are macros).
        .target(name: "CBulkheadPosix"),
        /// Types every process shares: cohort configuration, control messages,
        /// error kinds, stats, signatures.
        .target(
            name: "BulkheadCore",
            dependencies: [
                "CBulkheadPosix",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),

        /// The durable store: SQLite through GRDB, behind a protocol.
        .target(
            name: "Store",
            dependencies: [
                "BulkheadCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        /// The rollout engine: stages, health gates, decisions. Pure, clock injected.
        .target(name: "Rollout", dependencies: ["BulkheadCore"]),

        // MARK: Processes

        /// The data plane: one worker process serving one pool.
        .target(
            name: "Worker",
            dependencies: [
                "BulkheadCore", "CBulkheadPosix", "CLuaSandbox", "LuaSandbox", "HTTPWire",
            ]
        ),
        /// HTTP over a Unix socket (`control.sock`, `admin.sock`), checking the peer is
        /// this user: the one client the CLI and the control plane both use.
        .target(
            name: "UnixHTTP",
            dependencies: [
                "BulkheadCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        /// An etcd v3 client over the JSON gateway (async-http-client): KV, txn, leases,
        /// watch, status, auth, with failover between members. No bulkhead types.
        .target(
            name: "Etcd",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        /// The control store on etcd (`--etcd`): `BulkheadStore` under a key prefix,
        /// versions and ids from transactions, contents by hash in chunks.
        .target(
            name: "EtcdStore",
            dependencies: [
                "BulkheadCore", "Store", "Etcd", "Rollout",
                // A host's health reports go to the leading control process over HTTP.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        /// The control plane (`bulkhead control`): the only writer of the control
        /// store, its operations, the rollout driver, the scripts-directory poller,
        /// `--demo`; it asks the host agent what only the host knows over admin.sock.
        .target(
            name: "Control",
            dependencies: [
                "BulkheadCore", "Store", "Rollout", "UnixHTTP",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // The checks' short-lived child processes, awaited without holding a
                // thread: output read while they run, a deadline that kills them.
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        /// Pools, restarts, takeover: starts and watches the workers.
        .target(
            name: "Supervisor",
            dependencies: [
                "BulkheadCore", "Store", "Rollout", "Control",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// The ingress: routes each request by customer to its pool's port. No Lua.
        .target(
            name: "Ingress",
            dependencies: [
                "BulkheadCore", "HTTPWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        /// The host's own `/metrics` and `/healthz` (`serve --metrics`): a small
        /// listener on an event loop of its own, up whether the control API is or not.
        .target(
            name: "HostMetrics",
            dependencies: [
                "BulkheadCore", "Supervisor",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        /// The control API (Hummingbird) customers and operators use, and the host
        /// routes of admin.sock: typed operations, one router per surface.
        .target(
            name: "ControlAPI",
            dependencies: [
                "BulkheadCore", "Store", "Supervisor", "Control", "Rollout", "HostMetrics",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                // The connection guard's handler sits in Hummingbird's HTTP/1 pipeline.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            resources: [.copy("openapi.yaml")]
        ),
        /// A small keep-alive HTTP load generator that counts every outcome; used by
        /// the integration tests and `scripts/load`.
        .target(name: "LoadClient"),
        .executableTarget(
            name: "bulkhead",
            dependencies: [
                "BulkheadCore", "CBulkheadPosix", "HTTPWire", "LuaSandbox", "Worker", "Supervisor", "ControlAPI", "HostMetrics", "Store",
                "Ingress", "Control", "UnixHTTP", "Etcd", "EtcdStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                // The CLI is an HTTP client of control.sock and admin.sock.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        /// Calls per second through the sandbox, with and without limits.
        .executableTarget(
            name: "SandboxBench",
            dependencies: ["BulkheadCore", "LuaSandbox"]
        ),
        .executableTarget(
            name: "BulkheadLoad",
            dependencies: [
                "LoadClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Tests

        /// Seeded random numbers for generated test cases (fuzzers, the rules oracle).
        .target(name: "SeededRandom", path: "Tests/SeededRandom"),
        .testTarget(name: "LuaSandboxTests", dependencies: ["LuaSandbox", "BulkheadCore", "SeededRandom"]),
        .testTarget(name: "HTTPWireTests", dependencies: ["HTTPWire", "SeededRandom"]),
        .testTarget(name: "BulkheadCoreTests", dependencies: ["BulkheadCore"]),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "CBulkheadPosix"]),
        .testTarget(name: "LoadClientTests", dependencies: ["LoadClient"]),
        .testTarget(
            name: "StoreTests",
            dependencies: ["Store", "BulkheadCore", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(name: "RolloutTests", dependencies: ["Rollout"]),
        /// Against real etcd processes the tests start (installed when missing).
        .testTarget(name: "EtcdTests", dependencies: ["Etcd"]),
        /// The store's checks against SQLite and a real etcd; the etcd harness is
        /// EtcdTests' own file, linked in (Tests/EtcdStoreTests/EtcdHarness.swift).
        .testTarget(name: "EtcdStoreTests", dependencies: ["EtcdStore", "Etcd", "Store", "BulkheadCore"]),
        .testTarget(
            name: "ControlTests",
            dependencies: ["Control", "Store", "Rollout", "BulkheadCore", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "SupervisorTests", dependencies: ["Supervisor", "BulkheadCore", "Rollout", "Store"]),
        .testTarget(
            name: "IngressTests",
            dependencies: [
                "Ingress", "HTTPWire", "BulkheadCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "ControlAPITests", dependencies: ["ControlAPI", "BulkheadCore", "Rollout"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "BulkheadCore", "Supervisor", "Store", "Rollout", "LoadClient",
                // The fleet tests start etcd with EtcdTests' harness (linked) and read it.
                "Etcd",
                // The route-parity test reads the route tables it checks against the spec.
                "ControlAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
    ]
)
