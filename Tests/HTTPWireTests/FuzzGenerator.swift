import HTTPWire
import SeededRandom

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Configuration

/// How many cases to run from which seed. The test suite runs the defaults; a longer
/// run sets the environment:
///
///     BULKHEAD_FUZZ_COUNT=2000000 BULKHEAD_FUZZ_SEED=0x1234 scripts/fuzz-parser
///
/// The seed of each case is derived from the run's seed and the case's index, so a
/// failure names one case that can be replayed alone (`BULKHEAD_FUZZ_CASE=index`).
struct FuzzConfiguration {
    var seed: UInt64
    var count: Int
    /// Only this case, when set.
    var onlyCase: Int?
    /// Print how many cases ended in each outcome (`BULKHEAD_FUZZ_STATS=1`).
    var printStatistics = false

    static let defaultSeed: UInt64 = 0xB01C_4EAD_2025_0001
    static let defaultCount = 10_000

    static func fromEnvironment() -> FuzzConfiguration {
        FuzzConfiguration(
            seed: environment("BULKHEAD_FUZZ_SEED").flatMap(parseInteger) ?? defaultSeed,
            count: environment("BULKHEAD_FUZZ_COUNT").flatMap { Int($0) } ?? defaultCount,
            onlyCase: environment("BULKHEAD_FUZZ_CASE").flatMap { Int($0) },
            printStatistics: environment("BULKHEAD_FUZZ_STATS") != nil
        )
    }

    /// The generator of case `index`.
    func generator(forCase index: Int) -> RequestGenerator {
        var mixer = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: index) &* 0x2545_F491_4F6C_DD1D))
        return RequestGenerator(rng: SplitMix64(seed: mixer.next()))
    }

    private static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }

    private static func parseInteger(_ text: String) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            return UInt64(text.dropFirst(2), radix: 16)
        }
        return UInt64(text)
    }
}

// MARK: - Inputs

/// A valid request and what the parser must read from it.
struct GeneratedRequest {
    var bytes: [UInt8]
    var method: String
    var path: String
    var query: String
    var headers: [[String]]
    var body: [UInt8]
    var chunked: Bool
}

/// Makes valid requests, mutations of them, and noise.
struct RequestGenerator {
    var rng: SplitMix64

    static let methods = ["GET", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "M-SEARCH", "x"]
    static let hosts = ["example.com", "hello.acme.localhost:8101", "127.0.0.1:8101", "[::1]", "localhost", "a.b.c.d", ""]
    static let pathBytes = Array("abcxyz0189-._~%!$&'()*+,;=:@".utf8)
    static let queryBytes = Array("abcxyz0189-._~%!$&'()*+,;=:@/?".utf8)
    static let tokenBytes = Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    static let interesting: [UInt8] = [0x0D, 0x0A, 0x20, 0x09, 0x3A, 0x30, 0x46, 0x3B, 0x00, 0x7F, 0x80, 0xFF, 0x2C, 0x2F, 0x3F, 0x23, 0x31]
    static let vocabulary = [
        "GET", "POST", " ", " ", "/", "/a", "?q=1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "\r\n", "\r\n", "\n", "\r",
        ":", ": ", "Host", "Content-Length", "Transfer-Encoding", "chunked", "Connection", "close", "keep-alive",
        "Expect", "100-continue", "0", "5", "F", "ffffffffffffffffff", ";ext=1", "hello", "\t", ",", "\u{0}", "é",
        "http://h", "Host: h\r\n", "\r\n\r\n", "0\r\n\r\n", "5\r\nhello\r\n",
    ]
    static let dangerousLines = [
        "Transfer-Encoding: chunked", "Content-Length: 3", "Content-Length: 0", "Content-Length: 99999999999",
        "Host: x", "Expect: 100-continue", "Connection: close", " folded", "X: a\rb", "Transfer-Encoding: gzip",
        "X : y", "Content-Length: 3, 3",
    ]

    // MARK: Valid requests

    mutating func validRequest() -> GeneratedRequest {
        let http10 = rng.chance(20)
        let bareLF = rng.chance(10)
        var head: [UInt8] = []
        func line(_ text: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
            text + (bareLF && rng.chance(50) ? [0x0A] : [0x0D, 0x0A])
        }
        if rng.chance(5) { head += [0x0D, 0x0A] }

        let method = rng.pick(Self.methods)
        var path = "/"
        for segment in 0..<rng.below(5) {
            if segment > 0 { path += "/" }
            path += randomString(from: Self.pathBytes, count: rng.below(12))
        }
        let query = rng.chance(50) ? randomString(from: Self.queryBytes, count: rng.below(20)) : nil
        let target = path + (query.map { "?" + $0 } ?? "")
        head += line(Array("\(method) \(target) HTTP/1.\(http10 ? 0 : 1)".utf8), &rng)

        var headers: [[String]] = []
        func addHeader(_ name: String, _ value: String, _ rng: inout SplitMix64) {
            let before = rng.chance(70) ? " " : (rng.chance(50) ? "" : " \t ")
            let after = rng.chance(85) ? "" : (rng.chance(50) ? " " : "\t")
            head += line(Array("\(name):\(before)\(value)\(after)".utf8), &rng)
            headers.append([name, value])
        }

        var fieldPlan: [Int] = Array(0..<rng.below(9))
        if !http10 || rng.chance(50) {
            fieldPlan.insert(-1, at: rng.below(fieldPlan.count + 1))
        }
        let bodyKind = rng.below(http10 ? 2 : 3)  // 0 none, 1 length, 2 chunked
        let body = randomBytes(count: bodyKind == 0 ? 0 : rng.below(300))
        if bodyKind > 0 {
            fieldPlan.insert(-2, at: rng.below(fieldPlan.count + 1))
        }
        for field in fieldPlan {
            switch field {
            case -1:
                addHeader(rng.pick(["Host", "host", "HOST"]), rng.pick(Self.hosts), &rng)
            case -2:
                if bodyKind == 1 {
                    addHeader("Content-Length", String(body.count), &rng)
                } else {
                    addHeader("Transfer-Encoding", rng.pick(["chunked", "Chunked"]), &rng)
                }
            default:
                let name = "X-" + randomString(from: Self.tokenBytes, count: 1 + rng.below(12))
                addHeader(name, randomValue(), &rng)
            }
        }
        head += line([], &rng)

        var bytes = head
        switch bodyKind {
        case 1:
            bytes += body
        case 2:
            var offset = 0
            while offset < body.count {
                let size = 1 + rng.below(body.count - offset)
                var sizeText = String(size, radix: 16, uppercase: rng.chance(50))
                if rng.chance(10) { sizeText = "00" + sizeText }
                if rng.chance(15) { sizeText += rng.pick([";a=b", " ;x", ";q=\"v v\""]) }
                bytes += Array("\(sizeText)\r\n".utf8) + body[offset..<(offset + size)] + [0x0D, 0x0A]
                offset += size
            }
            bytes += Array("0\r\n".utf8)
            if rng.chance(20) { bytes += Array("Trailer-\(rng.below(9)): \(randomValue())\r\n".utf8) }
            bytes += [0x0D, 0x0A]
        default:
            break
        }
        return GeneratedRequest(
            bytes: bytes, method: method, path: path, query: query ?? "",
            headers: headers, body: body, chunked: bodyKind == 2
        )
    }

    /// A field value: visible ASCII, inner spaces and tabs, some obs-text; never
    /// starting or ending with whitespace (the parser trims that).
    mutating func randomValue() -> String {
        var bytes: [UInt8] = []
        for _ in 0..<rng.below(40) {
            switch rng.below(20) {
            case 0: bytes.append(0x20)
            case 1: bytes.append(0x09)
            case 2: bytes += [0xC3, 0xA9]
            default: bytes.append(UInt8(0x21 + rng.below(0x7E - 0x21 + 1)))
            }
        }
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        while let first = bytes.first, first == 0x20 || first == 0x09 { bytes.removeFirst() }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func randomString(from alphabet: [UInt8], count: Int) -> String {
        String(decoding: (0..<count).map { _ in rng.pick(alphabet) }, as: UTF8.self)
    }

    mutating func randomBytes(count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    // MARK: Noise and mutations

    /// Tokens of HTTP glued at random: gets further into the parser than pure noise.
    mutating func vocabularyNoise() -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<rng.below(40) {
            bytes += Array(rng.pick(Self.vocabulary).utf8)
        }
        return bytes
    }

    /// 1–3 mutations of `input`.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0..<(1 + rng.below(3)) {
            let position = rng.below(bytes.count + 1)
            switch rng.below(8) {
            case 0 where !bytes.isEmpty:
                bytes[min(position, bytes.count - 1)] = rng.chance(60) ? rng.pick(Self.interesting) : UInt8(truncatingIfNeeded: rng.next())
            case 1:
                bytes.insert(rng.chance(70) ? rng.pick(Self.interesting) : UInt8(truncatingIfNeeded: rng.next()), at: position)
            case 2 where !bytes.isEmpty:
                bytes.remove(at: min(position, bytes.count - 1))
            case 3:
                // Duplicate a whole line (a header twice, a chunk line twice...).
                let lines = lineStarts(bytes)
                let index = rng.below(lines.count)
                let start = lines[index]
                let end = index + 1 < lines.count ? lines[index + 1] : bytes.count
                bytes.insert(contentsOf: bytes[start..<end], at: start)
            case 4:
                // Add a line that changes framing or the connection, after the request line.
                let lines = lineStarts(bytes)
                let at = lines.count > 1 ? lines[1 + rng.below(lines.count - 1)] : bytes.count
                bytes.insert(contentsOf: Array((rng.pick(Self.dangerousLines) + "\r\n").utf8), at: at)
            case 5:
                bytes.removeSubrange(min(position, bytes.count)...)
            case 6:
                // CRLF → LF, or LF → CR.
                if let index = bytes.indices.filter({ bytes[$0] == 0x0A }).randomElement(using: &rng) {
                    if index > 0 && bytes[index - 1] == 0x0D && rng.chance(50) {
                        bytes.remove(at: index - 1)
                    } else {
                        bytes[index] = 0x0D
                    }
                }
            default:
                bytes.insert(contentsOf: Array(rng.pick(Self.vocabulary).utf8), at: position)
            }
        }
        return bytes
    }

    /// Where each line of `bytes` starts (after each LF), 0 first.
    func lineStarts(_ bytes: [UInt8]) -> [Int] {
        [0] + bytes.indices.filter { bytes[$0] == 0x0A }.map { $0 + 1 }.filter { $0 < bytes.count }
    }

    /// Up to three ascending cut points in `0...count`.
    mutating func cuts(count: Int) -> [Int] {
        (0..<(1 + rng.below(3))).map { _ in rng.below(count + 1) }.sorted()
    }

    /// Limits that are sometimes small enough to hit.
    mutating func limits() -> HTTPParserLimits {
        guard rng.chance(15) else { return HTTPParserLimits() }
        return HTTPParserLimits(
            maxHeadBytes: 32 + rng.below(200),
            maxHeaderCount: rng.below(6),
            maxBodyBytes: rng.below(200),
            maxChunkLineBytes: 3 + rng.below(30)
        )
    }
}
