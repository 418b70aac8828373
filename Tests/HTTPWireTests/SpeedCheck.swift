import HTTPWire
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Not a test of speed (timings are never asserted): prints how long a parse takes.
/// Run it in release mode:
///
///     BULKHEAD_SPEED=1 swift test -c release --filter SpeedCheck
@Suite("SpeedCheck", .enabled(if: getenv("BULKHEAD_SPEED") != nil))
struct SpeedCheck {
    /// A typical GET: 213 bytes, 5 header fields.
    static let typical = request("GET /acme/hello/api/items?id=42&sort=asc HTTP/1.1", [
        "Host: hello.acme.localhost:8101",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) curl/8.5",
        "Accept: */*",
        "Accept-Encoding: gzip, deflate, br",
        "Connection: keep-alive",
    ])

    @Test("ns per parse of a typical GET, and per route")
    func typicalGet() throws {
        let input = Array(text: Self.typical)
        let rounds = 20
        let perRound = 100_000
        var parser = HTTPRequestParser()
        var checksum = 0
        var parseTimes: [Double] = []
        var routeTimes: [Double] = []
        input.withUnsafeBytes { bytes in
            // Warm-up: the header storage reaches its size.
            for _ in 0..<1000 {
                if case .request(let head) = parser.parse(bytes) { checksum &+= head.consumed }
            }
            guard case .request(let head) = parser.parse(bytes) else { return }
            // Rounds, keeping the fastest and the median: the machine is shared, and
            // the fastest round is the one least disturbed by others.
            for _ in 0..<rounds {
                parseTimes.append(Self.nanoseconds(perRound) {
                    if case .request(let head) = parser.parse(bytes) { checksum &+= head.consumed &+ head.headerCount }
                })
                routeTimes.append(Self.nanoseconds(perRound) {
                    if let route = HTTPRoute.resolve(head, in: bytes) { checksum &+= route.scriptPath.count &+ route.customer.utf8.count }
                })
            }
        }
        parseTimes.sort()
        routeTimes.sort()
        guard parseTimes.count == rounds, routeTimes.count == rounds else {
            Issue.record("the typical request did not parse")
            return
        }
        print("""
            HTTPWire speed: \(input.count)-byte GET with 5 headers: parse \(Int(parseTimes[0])) ns \
            (median \(Int(parseTimes[rounds / 2])) ns), route \(Int(routeTimes[0])) ns \
            (median \(Int(routeTimes[rounds / 2])) ns) [\(checksum)]
            """)
        #expect(checksum > 0)
    }

    /// Mean nanoseconds per call of `body` over `count` calls.
    static func nanoseconds(_ count: Int, _ body: () -> Void) -> Double {
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for _ in 0..<count { body() }
        }
        let (seconds, attoseconds) = elapsed.components
        return (Double(seconds) * 1e9 + Double(attoseconds) / 1e9) / Double(count)
    }
}
