/// A response read off the wire: what the load client looks at, nothing more.
struct HTTPResponse: Sendable, Equatable {
    /// The status code, 100...599.
    var status: Int
    /// Header fields in order, names lower-cased.
    var headers: [(name: String, value: String)]
    /// The body, de-chunked.
    var body: [UInt8]
    /// Whether the connection may carry another request after this response.
    var keepAlive: Bool

    /// The first value of the header `name` (lower-case), if present.
    func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value
    }

    static func == (lhs: HTTPResponse, rhs: HTTPResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body && lhs.keepAlive == rhs.keepAlive
            && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }
}

/// An incremental HTTP/1.x response parser: feed it bytes as they arrive, it says
/// when one whole response is there.
///
/// Pure (no I/O) so it is tested on its own with split and malformed input. It is
/// strict on purpose: a load test must notice a server that frames responses
/// wrongly, since a real client would break on them too.
struct HTTPResponseParser {
    /// What the bytes fed so far amount to.
    enum Step: Equatable {
        /// The response is not complete yet.
        case needMore
        /// A whole response; `excess` bytes followed it that no request asked for.
        case complete(HTTPResponse, excess: Int)
        /// The bytes are not a valid response; the reason says where.
        case invalid(String)
    }

    /// Longest status line plus header section accepted.
    static let maxHeadBytes = 64 * 1024
    /// Largest body accepted (it is kept in memory to check expectations).
    static let maxBodyBytes = 16 * 1024 * 1024
    /// Longest chunk-size or trailer line accepted.
    private static let maxLineBytes = 4 * 1024

    /// Where in the response the next byte belongs.
    private enum State {
        /// Status line and header fields, up to the empty line.
        case head
        /// A Content-Length body with this many bytes still to come.
        case fixedBody(remaining: Int)
        /// A chunk-size line.
        case chunkSize
        /// Chunk data with this many bytes still to come.
        case chunkData(remaining: Int)
        /// The CRLF after a chunk's data.
        case chunkDataEnd
        /// Trailer fields after the last chunk; `bytes` read so far.
        case trailers(bytes: Int)
        /// A body that ends when the server closes the connection.
        case untilClose
        /// One whole response is there.
        case done
        /// The response was refused for this reason; nothing more is parsed.
        case failed(String)
    }

    private let requestWasHead: Bool
    private var buffer: [UInt8] = []
    private var position = 0
    private var state = State.head
    private var response = HTTPResponse(status: 0, headers: [], body: [], keepAlive: true)

    /// A parser for the response to one request; `requestWasHead` because the
    /// response to HEAD announces a body that never comes.
    init(requestWasHead: Bool = false) {
        self.requestWasHead = requestWasHead
    }

    /// Adds received bytes and reports whether a response is complete.
    mutating func feed(_ bytes: some Sequence<UInt8>) -> Step {
        if case .failed(let reason) = state { return .invalid(reason) }
        buffer.append(contentsOf: bytes)
        let step = advance()
        if case .invalid(let reason) = step { state = .failed(reason) }
        // Drop what is consumed so a long body does not keep its copy in `buffer`.
        if position > 0 {
            buffer.removeSubrange(0..<position)
            position = 0
        }
        return step
    }

    /// The peer closed the connection: returns the response if it was delimited by
    /// that close (no Content-Length, not chunked), or nil if it was cut short.
    mutating func endOfStream() -> HTTPResponse? {
        guard case .untilClose = state else { return nil }
        state = .done
        return response
    }

    /// Whether no byte of the response has arrived yet.
    var isEmpty: Bool {
        if case .head = state, buffer.isEmpty { return true }
        return false
    }

    // MARK: - Steps

    private mutating func advance() -> Step {
        while true {
            switch state {
            case .failed(let reason):
                return .invalid(reason)
            case .done:
                return .complete(response, excess: buffer.count - position)
            case .head:
                guard let end = find([13, 10, 13, 10]) else {
                    if buffer.count - position > Self.maxHeadBytes {
                        return .invalid("header section longer than \(Self.maxHeadBytes) bytes")
                    }
                    return .needMore
                }
                if end - position > Self.maxHeadBytes {
                    return .invalid("header section longer than \(Self.maxHeadBytes) bytes")
                }
                let head = buffer[position..<end]
                position = end + 4
                if let problem = parseHead(head) { return .invalid(problem) }
            case .fixedBody(let remaining):
                let taken = takeBody(upTo: remaining)
                if taken < remaining {
                    state = .fixedBody(remaining: remaining - taken)
                    return .needMore
                }
                state = .done
            case .chunkSize:
                guard let end = find([13, 10]) else {
                    if buffer.count - position > Self.maxLineBytes { return .invalid("chunk-size line too long") }
                    return .needMore
                }
                let line = buffer[position..<end]
                position = end + 2
                guard let size = Self.chunkSize(line) else {
                    return .invalid("bad chunk-size line '\(Self.text(line.prefix(40)))'")
                }
                guard response.body.count + size <= Self.maxBodyBytes else {
                    return .invalid("body over \(Self.maxBodyBytes) bytes")
                }
                state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size)
            case .chunkData(let remaining):
                let taken = takeBody(upTo: remaining)
                if taken < remaining {
                    state = .chunkData(remaining: remaining - taken)
                    return .needMore
                }
                state = .chunkDataEnd
            case .chunkDataEnd:
                guard buffer.count - position >= 2 else { return .needMore }
                guard buffer[position] == 13, buffer[position + 1] == 10 else {
                    return .invalid("chunk data not followed by CRLF")
                }
                position += 2
                state = .chunkSize
            case .trailers(let bytes):
                guard let end = find([13, 10]) else {
                    if bytes + buffer.count - position > Self.maxHeadBytes { return .invalid("trailers too long") }
                    return .needMore
                }
                let length = end - position
                position = end + 2
                // Trailer fields are skipped: nothing here depends on them.
                state = length == 0 ? .done : .trailers(bytes: bytes + length + 2)
            case .untilClose:
                _ = takeBody(upTo: buffer.count - position)
                if response.body.count > Self.maxBodyBytes {
                    return .invalid("body over \(Self.maxBodyBytes) bytes")
                }
                return .needMore
            }
        }
    }

    /// Moves up to `limit` buffered bytes into the body; returns how many it moved.
    private mutating func takeBody(upTo limit: Int) -> Int {
        let count = min(limit, buffer.count - position)
        response.body.append(contentsOf: buffer[position..<(position + count)])
        position += count
        return count
    }

    /// Index of the first occurrence of `pattern` at or after `position`.
    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count - position >= pattern.count else { return nil }
        var index = position
        let last = buffer.count - pattern.count
        while index <= last {
            if buffer[index] == pattern[0] {
                var matched = true
                for offset in 1..<pattern.count where buffer[index + offset] != pattern[offset] {
                    matched = false
                    break
                }
                if matched { return index }
            }
            index += 1
        }
        return nil
    }

    // MARK: - Head

    /// Parses the status line and header fields and decides how the body is framed.
    /// Returns a description of the problem, or nil.
    private mutating func parseHead(_ head: ArraySlice<UInt8>) -> String? {
        var lines = Self.split(head)
        guard !lines.isEmpty else { return "empty status line" }
        let statusLine = lines.removeFirst()
        guard let (minorVersion, status) = Self.statusLine(statusLine) else {
            return "bad status line '\(Self.text(statusLine.prefix(60)))'"
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let first = line.first, first != 32, first != 9 else {
                return "obsolete folded header line"
            }
            guard let colon = line.firstIndex(of: 58) else {
                return "header line without a colon '\(Self.text(line.prefix(60)))'"
            }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(Self.isTokenByte) else {
                return "bad header name '\(Self.text(name.prefix(60)))'"
            }
            var value = line[(colon + 1)...]
            while let byte = value.first, byte == 32 || byte == 9 { value.removeFirst() }
            while let byte = value.last, byte == 32 || byte == 9 { value.removeLast() }
            headers.append((name: Self.text(name).lowercased(), value: Self.text(value)))
        }

        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100...199).contains(status) {
            guard status != 101 else { return "unexpected 101 Switching Protocols" }
            return nil
        }

        let connectionTokens = Self.tokens(headers, "connection")
        let keepAlive = minorVersion >= 1
            ? !connectionTokens.contains("close")
            : connectionTokens.contains("keep-alive")
        response = HTTPResponse(status: status, headers: headers, body: [], keepAlive: keepAlive)

        if requestWasHead || status == 204 || status == 304 {
            state = .done
            return nil
        }
        let codings = Self.tokens(headers, "transfer-encoding")
        if !codings.isEmpty {
            if codings.last == "chunked" {
                state = .chunkSize
            } else {
                // RFC 9112 §6.3: without a final chunked coding the body runs to the close.
                response.keepAlive = false
                state = .untilClose
            }
            return nil
        }
        let lengths = headers.filter { $0.name == "content-length" }
            .flatMap { $0.value.split(separator: ",", omittingEmptySubsequences: false) }
            .map { $0.trimmingSpaces() }
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }) else { return "conflicting Content-Length values" }
            guard first.count <= 12, !first.isEmpty, first.utf8.allSatisfy({ (48...57).contains($0) }),
                  let length = Int(first)
            else { return "bad Content-Length '\(first.prefix(40))'" }
            guard length <= Self.maxBodyBytes else { return "Content-Length \(length) over \(Self.maxBodyBytes) bytes" }
            state = length == 0 ? .done : .fixedBody(remaining: length)
            return nil
        }
        response.keepAlive = false
        state = .untilClose
        return nil
    }

    /// `HTTP/1.x SSS[ reason]` → (x, SSS).
    private static func statusLine(_ line: ArraySlice<UInt8>) -> (Int, Int)? {
        let bytes = Array(line)
        let prefix = Array("HTTP/1.".utf8)
        guard bytes.count >= 12, Array(bytes[0..<7]) == prefix,
              (48...57).contains(bytes[7]), bytes[8] == 32
        else { return nil }
        let digits = bytes[9..<12]
        guard digits.allSatisfy({ (48...57).contains($0) }) else { return nil }
        guard bytes.count == 12 || bytes[12] == 32 else { return nil }
        let status = digits.reduce(0) { $0 * 10 + Int($1 - 48) }
        guard (100...599).contains(status) else { return nil }
        return (Int(bytes[7] - 48), status)
    }

    /// The lower-cased, comma-separated tokens of every `name` header.
    private static func tokens(_ headers: [(name: String, value: String)], _ name: String) -> [String] {
        headers.filter { $0.name == name }
            .flatMap { $0.value.split(separator: ",") }
            .map { $0.trimmingSpaces().lowercased() }
            .filter { !$0.isEmpty }
    }

    /// Hex size before any `;extension`, or nil.
    private static func chunkSize(_ line: ArraySlice<UInt8>) -> Int? {
        var digits = line.prefix { $0 != 59 }
        while let byte = digits.last, byte == 32 || byte == 9 { digits.removeLast() }
        // 15 hex digits cannot overflow Int; the body limit stops anything near that.
        guard !digits.isEmpty, digits.count <= 15 else { return nil }
        var size = 0
        for byte in digits {
            let value: Int
            switch byte {
            case 48...57: value = Int(byte) - 48
            case 65...70: value = Int(byte) - 55
            case 97...102: value = Int(byte) - 87
            default: return nil
            }
            size = size * 16 + value
        }
        return size
    }

    /// Lines of a header section, split at CRLF.
    private static func split(_ head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        var index = head.startIndex
        while index < head.endIndex {
            if head[index] == 13, index + 1 < head.endIndex, head[index + 1] == 10 {
                lines.append(head[start..<index])
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        lines.append(head[start..<head.endIndex])
        return lines
    }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 48...57, 65...90, 97...122: return true
        case 33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126: return true
        default: return false
        }
    }

    /// Bytes as text for headers and error messages; invalid UTF-8 is replaced.
    private static func text(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = firstIndex(where: { !isSpace($0) }),
              let end = lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(self[start...end])
    }
}
