import HTTPWire
import Testing

@Suite("Fuzz")
struct FuzzTests {
    /// 20,000 seeded cases by default (see `FuzzConfiguration` for longer runs): valid
    /// requests, mutations of them, pipelines, HTTP-flavoured noise and random bytes,
    /// some under tiny limits. For each: no crash, no range outside the input, the
    /// same result whichever way the bytes are split, and a valid request reads back
    /// exactly what was generated.
    @Test("seeded fuzz")
    func fuzz() {
        let configuration = FuzzConfiguration.fromEnvironment()
        let indices = configuration.onlyCase.map { [$0] } ?? Array(0..<configuration.count)
        var failures = 0
        var tally: [String: Int] = [:]
        for index in indices {
            var generator = configuration.generator(forCase: index)
            let (input, problems, whole) = runFuzzCase(&generator)
            if configuration.printStatistics {
                tally[whole.kind, default: 0] += 1
            }
            guard !problems.isEmpty else { continue }
            failures += 1
            Issue.record("""
                fuzz case \(index) (BULKHEAD_FUZZ_SEED=0x\(String(configuration.seed, radix: 16)) \
                BULKHEAD_FUZZ_CASE=\(index)): \(problems)
                input: \(escaped(input))
                """)
            if failures >= 10 { break }
        }
        if configuration.printStatistics {
            // How far the cases got, to see that the generator reaches every rule.
            for (kind, count) in tally.sorted(by: { $0.value > $1.value }) {
                print("fuzz outcome \(count)\t\(kind)")
            }
        }
    }

    /// Inputs that once broke an invariant, kept so they never come back.
    static let regressions: [String] = [
        // A CR at the very end of a prefix: must wait for the next byte, not refuse.
        "GET / HTTP/1.1\r",
        // The last byte before the head limit is the CR of the final CRLF.
        "GET / HTTP/1.1\r\nHost: h\r\n\r",
        // A bare LF ends the request line; a CR alone does not.
        "GET / HTTP/1.1\nHost: h\r\n\n",
        "GET / HTTP/1.1\r\rHost: h\r\n\r\n",
        // The absolute-form path that is the `/` of `://`.
        "GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n",
        // A chunk size line cut inside its CRLF, then data cut inside its CRLF.
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        // Empty chunk-size line, empty trailer name.
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n: x\r\n\r\n",
        // Content-Length that overflows while the head is still arriving.
        "POST / HTTP/1.1\r\nContent-Length: 184467440737095516160\r\nHost: h\r\n\r\n",
        // Nothing but line ends.
        "\r\n\r\n\r\n\n\n\r\n",
        "\n",
        "\r",
    ]

    @Test("regression inputs", arguments: regressions)
    func regression(_ text: String) {
        let input = Array(text: text)
        var violations: [String] = []
        let whole = parseWhole(input, violations: &violations)
        let (split, more) = parseByteAtATime(input)
        #expect(split == whole.ignoringContinueSignal)
        #expect(violations.isEmpty && more.isEmpty, "\(violations) \(more)")
        let small = HTTPParserLimits(maxHeadBytes: 20, maxHeaderCount: 1, maxBodyBytes: 1, maxChunkLineBytes: 3)
        let wholeSmall = parseWhole(input, limits: small, violations: &violations)
        #expect(parseByteAtATime(input, limits: small).0 == wholeSmall.ignoringContinueSignal)
        #expect(violations.isEmpty)
    }
}

/// Runs one case; returns its input, what went wrong (nothing when all is well) and
/// the whole input's outcome.
func runFuzzCase(_ generator: inout RequestGenerator) -> ([UInt8], [String], Outcome) {
    let limits = generator.limits()
    let kind = generator.rng.below(100)
    var problems: [String] = []
    var input: [UInt8]
    var expected: GeneratedRequest?
    var pipeline: [[UInt8]] = []
    switch kind {
    case 0..<25:
        let generated = generator.validRequest()
        input = generated.bytes
        if limits == HTTPParserLimits() { expected = generated }
    case 25..<70:
        input = generator.mutate(generator.validRequest().bytes)
    case 70..<78:
        pipeline = (0..<(2 + generator.rng.below(2))).map { _ in generator.validRequest().bytes }
        input = pipeline.joined().map { $0 }
    case 78..<92:
        input = generator.vocabularyNoise()
    default:
        input = generator.randomBytes(count: generator.rng.below(300))
    }

    // The whole input in one call.
    var violations: [String] = []
    let whole = parseWhole(input, limits: limits, violations: &violations)
    problems += violations

    // A few random splits.
    var incompletes: [Outcome] = []
    let split = parseFeeding(input, cuts: generator.cuts(count: input.count), limits: limits, violations: &violations, allIncomplete: &incompletes)
    if split != whole.ignoringContinueSignal {
        problems.append("split gave \(split), whole gave \(whole)")
    }

    if let expected {
        // Every split of a valid request: each prefix length in turn.
        let (byteAtATime, more) = parseByteAtATime(input, limits: limits)
        problems += more
        if byteAtATime != whole.ignoringContinueSignal {
            problems.append("byte at a time gave \(byteAtATime), whole gave \(whole)")
        }
        problems += compare(whole, with: expected)
    }

    if !pipeline.isEmpty && limits == HTTPParserLimits() {
        let outcomes = parsePipelined(input, limits: limits)
        let consumed = outcomes.compactMap(\.request).map(\.consumed)
        if consumed != pipeline.map(\.count) {
            problems.append("pipeline consumed \(consumed), expected \(pipeline.map(\.count)): \(outcomes)")
        }
    }
    return (input, problems, whole)
}

/// What a valid generated request must read back as.
func compare(_ outcome: Outcome, with expected: GeneratedRequest) -> [String] {
    guard let decoded = outcome.request else {
        return ["valid request not parsed: \(outcome)"]
    }
    var problems: [String] = []
    if decoded.method != expected.method { problems.append("method \(decoded.method) != \(expected.method)") }
    if decoded.path != expected.path { problems.append("path \(decoded.path) != \(expected.path)") }
    if decoded.query != expected.query { problems.append("query \(decoded.query) != \(expected.query)") }
    if decoded.headers != expected.headers { problems.append("headers \(decoded.headers) != \(expected.headers)") }
    if decoded.bodyBytes != expected.body { problems.append("body differs") }
    if decoded.chunked != expected.chunked { problems.append("chunked \(decoded.chunked)") }
    if decoded.consumed != expected.bytes.count { problems.append("consumed \(decoded.consumed) of \(expected.bytes.count)") }
    return problems
}

/// `bytes` as a Swift string literal (printable ASCII as is, controls escaped), or as
/// an array literal when it holds bytes a String cannot (0x80 and up).
func escaped(_ bytes: [UInt8]) -> String {
    if bytes.contains(where: { $0 >= 0x80 }) {
        return "[" + bytes.map { "0x" + String($0, radix: 16) }.joined(separator: ", ") + "] as [UInt8]"
    }
    var text = ""
    for byte in bytes {
        switch byte {
        case 0x0D: text += "\\r"
        case 0x0A: text += "\\n"
        case 0x09: text += "\\t"
        case 0x22: text += "\\\""
        case 0x5C: text += "\\\\"
        case 0x20..<0x7F: text.unicodeScalars.append(Unicode.Scalar(byte))
        default: text += "\\u{\(String(byte, radix: 16))}"
        }
    }
    return "\"" + text + "\""
}
