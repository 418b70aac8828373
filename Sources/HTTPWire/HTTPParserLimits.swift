/// What a request may weigh before the parser refuses it. One value per pool: the body
/// limit comes from the cohort's `max_body_kb`. Negative values count as zero.
public struct HTTPParserLimits: Hashable, Sendable {
    /// The largest head in bytes: request line, header lines, line ends and the empty
    /// line that ends the head (and any empty lines before the request line). Over it:
    /// 431. Default 16 KiB.
    public var maxHeadBytes: Int
    /// The most header lines in one request. Over it: 431. Default 100.
    public var maxHeaderCount: Int
    /// The largest body in bytes, after chunked decoding. Over it: 413, as soon as the
    /// Content-Length or a chunk size says so. Default 1 MiB.
    public var maxBodyBytes: Int
    /// The longest chunk-size line in bytes, extensions and CRLF included. Over it: 400.
    /// Default 1 KiB (a size needs at most 18 bytes; the rest is extensions, which are
    /// ignored).
    public var maxChunkLineBytes: Int

    /// Limits with the defaults above unless given.
    public init(
        maxHeadBytes: Int = 16 * 1024,
        maxHeaderCount: Int = 100,
        maxBodyBytes: Int = 1024 * 1024,
        maxChunkLineBytes: Int = 1024
    ) {
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.maxChunkLineBytes = maxChunkLineBytes
    }
}
