// MARK: - Chunked body (RFC 9112 §7.1)

extension HTTPRequestParser {
    /// Decodes chunks into `decodedBody` from `state.chunkPosition` on. Returns `.done`
    /// with `state.consumed` set after the empty line that ends the trailers.
    ///
    /// Strict on purpose: sizes are `1*HEXDIG` that must fit in an `Int`, every line
    /// and every chunk's data end with CRLF exactly (no bare LF), extensions (`;…`) are
    /// skipped but may not hold controls, and trailer fields are checked and dropped.
    mutating func parseChunked(_ bytes: UnsafeRawBufferPointer) -> ParseStep {
        var position = state.chunkPosition
        while true {
            switch state.chunkStage {
            case .sizeLine:
                let maxLine = max(limits.maxChunkLineBytes, 0)
                let searchEnd = ASCII.clampedEnd(position, plus: maxLine, limit: bytes.count)
                guard let lf = ASCII.firstLF(in: bytes, from: max(position, state.scanFrom), to: searchEnd) else {
                    state.chunkPosition = position
                    state.scanFrom = max(searchEnd, position)
                    return bytes.count &- position >= maxLine ? .failed(.chunkLineTooLong) : .needMore
                }
                guard lf > position, bytes[lf &- 1] == ASCII.cr else { return .failed(.invalidChunkFraming) }
                guard let size = Self.chunkSize(bytes, position, lf &- 1) else {
                    return .failed(.invalidChunkSize)
                }
                position = lf &+ 1
                if size == 0 {
                    state.chunkStage = .trailers
                    state.trailerStart = position
                } else {
                    // Refuse as soon as the size is known, before its data arrives.
                    guard size <= max(limits.maxBodyBytes, 0) &- decodedBody.count else {
                        return .failed(.bodyTooLarge)
                    }
                    state.chunkStage = .data(remaining: size)
                }

            case .data(let remaining):
                let available = max(bytes.count &- position, 0)
                let count = min(available, remaining)
                if count > 0 {
                    decodedBody.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position..<(position &+ count)]))
                    position &+= count
                }
                guard count == remaining else {
                    state.chunkStage = .data(remaining: remaining &- count)
                    state.chunkPosition = position
                    return .needMore
                }
                state.chunkStage = .dataEnd

            case .dataEnd:
                // Each byte is judged as soon as it is there: the same for any split.
                guard position < bytes.count else {
                    state.chunkPosition = position
                    return .needMore
                }
                guard bytes[position] == ASCII.cr else { return .failed(.invalidChunkFraming) }
                guard position &+ 1 < bytes.count else {
                    state.chunkPosition = position
                    return .needMore
                }
                guard bytes[position &+ 1] == ASCII.lf else { return .failed(.invalidChunkFraming) }
                position &+= 2
                state.chunkStage = .sizeLine

            case .trailers:
                let maxSection = max(limits.maxHeadBytes, 0)
                let searchEnd = ASCII.clampedEnd(state.trailerStart, plus: maxSection, limit: bytes.count)
                guard let lf = ASCII.firstLF(in: bytes, from: max(position, state.scanFrom), to: searchEnd) else {
                    state.chunkPosition = position
                    state.scanFrom = max(searchEnd, position)
                    return bytes.count &- state.trailerStart >= maxSection ? .failed(.trailersTooLarge) : .needMore
                }
                guard lf > position, bytes[lf &- 1] == ASCII.cr else { return .failed(.invalidChunkFraming) }
                let lineEnd = lf &- 1
                if lineEnd == position {
                    state.consumed = lf &+ 1
                    return .done
                }
                // Trailers are dropped (nothing in bulkhead reads them), but must still be
                // well-formed fields.
                guard !ASCII.isWhitespace(bytes[position]), Self.splitField(bytes, position, lineEnd) != nil else {
                    return .failed(.invalidTrailer)
                }
                position = lf &+ 1
            }
        }
    }

    /// The size in a chunk-size line `bytes[start..<end]` (CRLF excluded):
    /// `1*HEXDIG [ BWS ";" extensions ]`, or nil when malformed or over `Int.max`.
    static func chunkSize(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Int? {
        var size = 0
        var index = start
        while index < end, let digit = ASCII.hexValue(bytes[index]) {
            guard size <= (Int.max &- digit) / 16 else { return nil }
            size = size &* 16 &+ digit
            index &+= 1
        }
        guard index > start else { return nil }
        if index < end {
            var extensionStart = index
            while extensionStart < end && ASCII.isWhitespace(bytes[extensionStart]) {
                extensionStart &+= 1
            }
            guard extensionStart < end, bytes[extensionStart] == ASCII.semicolon,
                  !ASCII.containsControl(bytes, from: extensionStart, to: end)
            else { return nil }
        }
        return size
    }
}
