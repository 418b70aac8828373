import HTTPWire
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Two seeded fuzzers of the request parser, 10,000 cases each by default (see
/// `FuzzConfiguration` for longer runs, `make fuzz`):
/// - "generated": valid requests built from their parts, mutations of them,
///   pipelines, HTTP-flavoured noise and random bytes;
/// - "corpus": the seed corpus (`FuzzCorpus`) and every regression input, mutated by
///   bit flips, insertions, deletions, splices between inputs, repeated pieces, line
///   ending and number changes, stacked.
///
/// Every case, some under tiny limits, is checked by `invariantProblems`. A failure
/// prints the seed, the case and its bytes as a Swift array literal, ready to paste into
/// `FuzzRegressionTests` with the outcome RFC 9112 asks for.
@Suite("Fuzz")
struct FuzzTests {
    @Test("seeded fuzz: generated requests")
    func generated() {
        runFuzz(name: "generated", salt: 0) { generator in
            runGeneratedCase(&generator)
        }
    }

    @Test("seeded fuzz: mutated corpus")
    func corpus() {
        let seeds = FuzzCorpus.entries.map(\.bytes) + FuzzRegressionTests.cases.map(\.bytes)
        runFuzz(name: "corpus", salt: 0x6D75_7461_7465) { generator in
            runCorpusCase(&generator, seeds: seeds)
        }
    }

    @Test("the seed corpus parses as RFC 9112 says", arguments: FuzzCorpus.entries)
    func seed(_ entry: NamedInput) {
        expectRFCOutcome(entry)
        let problems = invariantProblems(entry.bytes, limits: HTTPParserLimits(), byteAtATime: true, cuts: [])
        #expect(problems.isEmpty, "\(problems)")
    }
}

// MARK: - Running

/// Runs `count` cases of one fuzzer (or the one `BULKHEAD_FUZZ_CASE` names), records an
/// issue for each failing one (the first ten), and prints one summary line.
func runFuzz(name: String, salt: UInt64, _ runCase: (inout RequestGenerator) -> FuzzCase) {
    var configuration = FuzzConfiguration.fromEnvironment()
    configuration.seed ^= salt
    let indices = configuration.onlyCase.map { $0..<($0 + 1) } ?? 0..<configuration.count
    var failures = 0
    var tally: [String: Int] = [:]
    let started = monotonicSeconds()
    for index in indices {
        var generator = configuration.generator(forCase: index)
        let result = runCase(&generator)
        tally[result.outcome.kind, default: 0] += 1
        guard !result.problems.isEmpty else { continue }
        failures += 1
        Issue.record("""
            fuzz \(name) case \(index) (replay: BULKHEAD_FUZZ_SEED=0x\(String(configuration.seed ^ salt, radix: 16)) \
            BULKHEAD_FUZZ_CASE=\(index) swift test --filter Fuzz)
            \(result.note)limits: \(result.limits)
            problems: \(result.problems.joined(separator: "\n  "))
            bytes: \(arrayLiteral(result.input))
            as text: \(escaped(result.input))
            """)
        if failures >= 10 { break }
    }
    let seconds = monotonicSeconds() - started
    let requests = tally["request", default: 0]
    let incomplete = tally["incomplete", default: 0]
    print("fuzz \(name): \(indices.count) cases from seed 0x\(String(configuration.seed ^ salt, radix: 16)) in "
          + "\(Int(seconds * 1000)) ms: \(requests) requests, \(incomplete) incomplete, "
          + "\(indices.count - requests - incomplete) refused, \(failures) failing")
    if configuration.printStatistics {
        // How far the cases got, to see that the generators reach every rule.
        for (kind, count) in tally.sorted(by: { $0.value > $1.value }) {
            print("fuzz \(name) outcome \(count)\t\(kind)")
        }
    }
}

/// One case: what was parsed, under which limits, what went wrong.
struct FuzzCase {
    var input: [UInt8]
    var limits: HTTPParserLimits
    var problems: [String]
    var outcome: Outcome
    /// How the input was made, for the report.
    var note = ""
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

// MARK: - The generated fuzzer

/// Valid requests (whose parts must read back exactly), mutations of them, pipelines,
/// noise and random bytes.
func runGeneratedCase(_ generator: inout RequestGenerator) -> FuzzCase {
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

    // Every split of valid requests; of the rest, one in eight.
    let everySplit = expected != nil || generator.rng.chance(12)
    problems += invariantProblems(input, limits: limits, byteAtATime: everySplit, cuts: generator.cuts(count: input.count))
    var violations: [String] = []
    let whole = parseWhole(input, limits: limits, violations: &violations)
    if let expected {
        problems += compare(whole, with: expected)
    }
    if !pipeline.isEmpty && limits == HTTPParserLimits() {
        let outcomes = parsePipelined(input, limits: limits)
        let consumed = outcomes.compactMap(\.request).map(\.consumed)
        if consumed != pipeline.map(\.count) {
            problems.append("pipeline consumed \(consumed), expected \(pipeline.map(\.count)): \(outcomes)")
        }
    }
    return FuzzCase(input: input, limits: limits, problems: problems, outcome: whole)
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

// MARK: - The corpus fuzzer

/// A seed from the corpus as it is, mutated lightly or heavily, spliced with another,
/// or a generated request mutated; fed whole, split, and a byte at a time.
func runCorpusCase(_ generator: inout RequestGenerator, seeds: [[UInt8]]) -> FuzzCase {
    let limits = generator.limits()
    let kind = generator.rng.below(100)
    let seedIndex = generator.rng.below(seeds.count)
    var donors = seeds
    var note: String
    var input: [UInt8]
    switch kind {
    case 0..<6:
        input = seeds[seedIndex]
        note = "seed \(seedIndex) as is"
    case 6..<58:
        let (mutated, used) = generator.mutateCase(seeds[seedIndex], donors: donors)
        input = mutated
        note = "seed \(seedIndex), mutations \(used)"
    case 58..<76:
        let generated = generator.validRequest().bytes
        donors.append(generated)
        let (mutated, used) = generator.mutateCase(generated, donors: donors)
        input = mutated
        note = "generated request, mutations \(used)"
    case 76..<88:
        // A pipelined pair, one or both mutated.
        let other = generator.rng.below(seeds.count)
        let (first, used1) = generator.mutateCase(seeds[seedIndex], donors: donors, count: generator.rng.below(2))
        let (second, used2) = generator.mutateCase(seeds[other], donors: donors, count: generator.rng.below(3))
        input = first + second
        note = "seeds \(seedIndex) + \(other), mutations \(used1) + \(used2)"
    default:
        let (mutated, used) = generator.mutateCase(seeds[seedIndex], donors: donors, count: 5 + generator.rng.below(8))
        input = mutated
        note = "seed \(seedIndex), mutations \(used)"
    }
    let everySplit = input.count <= 160 || generator.rng.chance(25)
    let problems = invariantProblems(input, limits: limits, byteAtATime: everySplit, cuts: generator.cuts(count: input.count))
    var violations: [String] = []
    let whole = parseWhole(input, limits: limits, violations: &violations)
    return FuzzCase(input: input, limits: limits, problems: problems, outcome: whole, note: note + "\n")
}

// MARK: - Invariants

/// Everything that must hold for any input under any limits:
/// - no range of a request outside the buffer, `consumed` within it (a trap would end
///   the test run, which fails it too);
/// - the result does not depend on how the bytes arrive: whole, split at `cuts`, and
///   (when asked) a byte at a time;
/// - the same as the reference reading (`ReferenceReader`): same category, same parts;
/// - never a request where RFC 9112 says the server must refuse one;
/// - a request written out again from its parsed parts parses to the same parts, and
///   routes to names that are valid;
/// - in a pipeline, a parser reused after a request reads the next one as a fresh
///   parser does.
func invariantProblems(_ input: [UInt8], limits: HTTPParserLimits, byteAtATime: Bool, cuts: [Int]) -> [String] {
    var problems: [String] = []
    var violations: [String] = []
    let whole = parseWhole(input, limits: limits, violations: &violations)
    problems += violations.map { "whole: \($0)" }
    if let error = whole.error, ![400, 413, 431, 501, 505].contains(error.status) {
        problems.append("status \(error.status) is not one the parser answers")
    }

    var splitViolations: [String] = []
    var incompletes: [Outcome] = []
    let split = parseFeeding(input, cuts: cuts, limits: limits, violations: &splitViolations, allIncomplete: &incompletes)
    if split != whole.ignoringContinueSignal {
        problems.append("split at \(cuts) gave \(split), whole gave \(whole)")
    }
    problems += splitViolations.map { "split: \($0)" }
    if byteAtATime {
        let (trickled, more) = parseByteAtATime(input, limits: limits)
        if trickled != whole.ignoringContinueSignal {
            problems.append("byte at a time gave \(trickled), whole gave \(whole)")
        }
        problems += more.map { "byte at a time: \($0)" }
    }

    problems += differentialProblems(input, limits: limits, whole: whole)
    if case .request(let decoded) = whole {
        problems += roundTripProblems(input, limits: limits)
        if decoded.consumed < input.count {
            problems += pipelineProblems(input, limits: limits)
        }
    }
    return problems
}

/// The parser against the reference reading and the must-refuse rules.
func differentialProblems(_ input: [UInt8], limits: HTTPParserLimits, whole: Outcome) -> [String] {
    var problems: [String] = []
    let (reference, why) = ReferenceReader.explain(input, limits: limits)
    switch (whole, reference) {
    case (.error, .error):
        break
    case (.incomplete(let got), .incomplete(let want)):
        if got.headComplete != want.headComplete || got.expectsContinue != want.expectsContinue {
            problems.append("incomplete \(got), reference \(want)")
        }
    case (.request(let got), .request(let want)):
        if got != want { problems.append("request \(got)\n  reference \(want)") }
    default:
        problems.append("parser: \(whole)\n  reference: \(reference.error == nil ? "\(reference)" : "refused: " + why)")
    }
    if whole.request != nil {
        let broken = rulesThatMustRefuse(input)
        if !broken.isEmpty { problems.append("accepted, but RFC 9112 says refuse: \(broken)") }
    }
    return problems
}

/// Writes the request at the start of `input` out again from its parts (canonical
/// spacing, CRLF, one chunk) and parses that: the parts must be the same. Also resolves
/// its route.
func roundTripProblems(_ input: [UInt8], limits: HTTPParserLimits) -> [String] {
    var parser = HTTPRequestParser(limits: limits)
    return input.withUnsafeBytes { bytes -> [String] in
        guard case .request(let head) = parser.parse(bytes) else { return ["round trip: not a request the second time"] }
        var problems: [String] = []
        if let route = HTTPRoute.resolve(head, in: bytes) {
            let path = route.scriptPath
            if path.lowerBound < 0 || path.upperBound > bytes.count || path.isEmpty || bytes[path.lowerBound] != UInt8(ascii: "/") {
                problems.append("route path \(path) is not a path in the buffer")
            }
            if !HTTPRoute.isValidName(route.customer) || !HTTPRoute.isValidName(route.script) {
                problems.append("route names \(route.customer)/\(route.script) are not valid names")
            }
        }
        func slice(_ range: Range<Int>) -> [UInt8] { Array(bytes[range]) }
        var text = slice(head.method) + [0x20] + slice(head.target) + Array(" HTTP/1.\(head.version.minor)\r\n".utf8)
        for field in parser.headerFields {
            text += slice(field.name) + [0x3A, 0x20] + slice(field.value) + [0x0D, 0x0A]
        }
        text += [0x0D, 0x0A]
        let headBytes = text.count
        let body = parser.withBody(of: head, in: bytes) { Array($0) }
        switch head.body {
        case .chunked:
            if !body.isEmpty { text += Array("\(String(body.count, radix: 16))\r\n".utf8) + body + [0x0D, 0x0A] }
            text += Array("0\r\n\r\n".utf8)
        case .contiguous:
            text += body
        case .none:
            break
        }
        let roomy = HTTPParserLimits(
            maxHeadBytes: max(headBytes + 1, 16 * 1024), maxHeaderCount: max(head.headerCount, 100),
            maxBodyBytes: max(body.count, 1024 * 1024), maxChunkLineBytes: 1024)
        var violations: [String] = []
        let first = outcome(of: .request(head), parser: parser, bytes: bytes, violations: &violations)
        let again = parseWhole(text, limits: roomy, violations: &violations)
        guard var original = first.request, var reread = again.request else {
            return problems + ["round trip: \(escaped(text)) parsed as \(again)"]
        }
        // Offsets differ by design; everything else must not.
        (original.headLength, original.consumed, reread.headLength, reread.consumed) = (0, 0, 0, 0)
        if original != reread { problems.append("round trip: \(original)\n  became \(reread)") }
        return problems + violations
    }
}

/// Each further request of a pipeline, by a parser that has just read one and by a
/// fresh one: the same result (no state leaks from one request into the next).
func pipelineProblems(_ input: [UInt8], limits: HTTPParserLimits) -> [String] {
    var reused = HTTPRequestParser(limits: limits)
    var problems: [String] = []
    var violations: [String] = []
    input.withUnsafeBytes { all in
        var offset = 0
        for _ in 0..<4 where offset < all.count {
            let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
            let next = outcome(of: reused.parse(rest), parser: reused, bytes: rest, violations: &violations)
            var fresh = HTTPRequestParser(limits: limits)
            let alone = outcome(of: fresh.parse(rest), parser: fresh, bytes: rest, violations: &violations)
            if next != alone {
                problems.append("pipelined at \(offset): reused parser gave \(next), fresh one \(alone)")
            }
            guard let request = next.request else { return }
            offset += request.consumed
        }
    }
    return problems + violations.map { "pipeline: \($0)" }
}

// MARK: - Printing inputs

/// `bytes` as a Swift array literal, to paste into a regression test.
func arrayLiteral(_ bytes: [UInt8]) -> String {
    "[" + bytes.map { "0x" + String($0, radix: 16, uppercase: true).leftPadded(to: 2) }.joined(separator: ", ") + "] as [UInt8]"
}

extension String {
    func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}

/// `bytes` as a Swift string literal (printable ASCII as is, controls escaped), or as
/// an array literal when it holds bytes a String cannot (0x80 and up).
func escaped(_ bytes: [UInt8]) -> String {
    if bytes.contains(where: { $0 >= 0x80 }) {
        return arrayLiteral(bytes)
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
