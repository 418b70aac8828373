/// Why a request was refused. Each has the status code to answer with (400, 413, 431,
/// 501 or 505) and a short reason for the error body and the log. After any of them the
/// connection cannot be trusted to be in sync: answer, then close it.
///
/// A struct around a private enum, so new rules can be added without breaking a
/// `switch` elsewhere; compare with `==` against the static members.
public struct HTTPParseError: Error, Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        case invalidRequestLine
        case invalidMethod
        case invalidRequestTarget
        case invalidVersion
        case unsupportedVersion
        case bareCarriageReturn
        case obsoleteLineFolding
        case invalidHeaderName
        case whitespaceBeforeColon
        case missingColon
        case invalidHeaderValue
        case missingHost
        case duplicateHost
        case invalidHost
        case invalidContentLength
        case conflictingContentLength
        case contentLengthWithTransferEncoding
        case transferEncodingInHTTP10
        case chunkedNotFinal
        case unsupportedTransferEncoding
        case invalidChunkSize
        case invalidChunkFraming
        case chunkLineTooLong
        case invalidTrailer
        case headTooLarge
        case tooManyHeaders
        case trailersTooLarge
        case bodyTooLarge
    }

    let kind: Kind

    init(_ kind: Kind) {
        self.kind = kind
    }

    // MARK: 400 Bad Request

    /// The request line is not `method SP request-target SP HTTP-version`, with exactly
    /// one space between the parts.
    public static var invalidRequestLine: Self { Self(.invalidRequestLine) }
    /// The method is not a token (RFC 9110 §9.1).
    public static var invalidMethod: Self { Self(.invalidMethod) }
    /// The request-target is neither origin-form (`/path?query`) nor absolute-form
    /// (`http://host/path`), or holds a byte a URI may not (space, control, `#`,
    /// non-ASCII). The asterisk-form (`OPTIONS *`) and authority-form (`CONNECT`) are
    /// refused too: bulkhead serves scripts, it is not a proxy.
    public static var invalidRequestTarget: Self { Self(.invalidRequestTarget) }
    /// The version is not `HTTP/DIGIT.DIGIT` (case-sensitive, RFC 9112 §2.3).
    public static var invalidVersion: Self { Self(.invalidVersion) }
    /// A CR that does not end a line. Bare CRs are never accepted (RFC 9112 §2.2).
    public static var bareCarriageReturn: Self { Self(.bareCarriageReturn) }
    /// A header line that starts with whitespace: obsolete line folding, or whitespace
    /// between the request line and the first header (RFC 9112 §2.2, §5.2).
    public static var obsoleteLineFolding: Self { Self(.obsoleteLineFolding) }
    /// A header name that is empty or not a token.
    public static var invalidHeaderName: Self { Self(.invalidHeaderName) }
    /// Whitespace between a header name and its colon (RFC 9112 §5.1).
    public static var whitespaceBeforeColon: Self { Self(.whitespaceBeforeColon) }
    /// A header line without a colon.
    public static var missingColon: Self { Self(.missingColon) }
    /// A header value with a control character other than HTAB.
    public static var invalidHeaderValue: Self { Self(.invalidHeaderValue) }
    /// An HTTP/1.1 request without a Host header (RFC 9112 §3.2).
    public static var missingHost: Self { Self(.missingHost) }
    /// More than one Host header.
    public static var duplicateHost: Self { Self(.duplicateHost) }
    /// A Host value (or absolute-form authority) with a byte no host or port has.
    public static var invalidHost: Self { Self(.invalidHost) }
    /// A Content-Length that is not one or more decimal digits.
    public static var invalidContentLength: Self { Self(.invalidContentLength) }
    /// Content-Length headers with different values.
    public static var conflictingContentLength: Self { Self(.conflictingContentLength) }
    /// Both Content-Length and Transfer-Encoding: the classic request-smuggling shape.
    public static var contentLengthWithTransferEncoding: Self { Self(.contentLengthWithTransferEncoding) }
    /// Transfer-Encoding in an HTTP/1.0 request, whose framing is then unreliable
    /// (RFC 9112 §6.1).
    public static var transferEncodingInHTTP10: Self { Self(.transferEncodingInHTTP10) }
    /// A Transfer-Encoding whose last coding is not `chunked` (`gzip`, `chunked, gzip`):
    /// the body's length cannot be known, and RFC 9112 §6.3 makes this a 400.
    public static var chunkedNotFinal: Self { Self(.chunkedNotFinal) }
    /// A chunk size that is not hexadecimal, or does not fit in an `Int`.
    public static var invalidChunkSize: Self { Self(.invalidChunkSize) }
    /// A chunk line or chunk data not followed by CRLF.
    public static var invalidChunkFraming: Self { Self(.invalidChunkFraming) }
    /// A chunk-size line (extensions included) longer than `maxChunkLineBytes`.
    public static var chunkLineTooLong: Self { Self(.chunkLineTooLong) }
    /// A trailer line that is not `name: value`.
    public static var invalidTrailer: Self { Self(.invalidTrailer) }

    // MARK: 413, 431, 501, 505

    /// The body is larger than `maxBodyBytes` (413). Known from Content-Length before any
    /// of the body arrives, or from the first chunk size that crosses the limit.
    public static var bodyTooLarge: Self { Self(.bodyTooLarge) }
    /// The head is larger than `maxHeadBytes` (431).
    public static var headTooLarge: Self { Self(.headTooLarge) }
    /// More than `maxHeaderCount` header lines (431).
    public static var tooManyHeaders: Self { Self(.tooManyHeaders) }
    /// The chunked trailer section is larger than `maxHeadBytes` (431).
    public static var trailersTooLarge: Self { Self(.trailersTooLarge) }
    /// A transfer coding other than `chunked` before a final `chunked` (`gzip,
    /// chunked`), or `chunked` twice: codings bulkhead does not implement (501, RFC 9112
    /// §6.1).
    public static var unsupportedTransferEncoding: Self { Self(.unsupportedTransferEncoding) }
    /// A well-formed version other than HTTP/1.x, such as HTTP/2.0 or HTTP/0.9 (505).
    public static var unsupportedVersion: Self { Self(.unsupportedVersion) }

    // MARK: Status and reason

    /// The status code to answer with.
    public var status: Int {
        switch kind {
        case .bodyTooLarge: 413
        case .headTooLarge, .tooManyHeaders, .trailersTooLarge: 431
        case .unsupportedTransferEncoding: 501
        case .unsupportedVersion: 505
        default: 400
        }
    }

    /// A short reason for a person: what was wrong with the request.
    public var reason: String {
        switch kind {
        case .invalidRequestLine: "malformed request line (want: METHOD SP /path SP HTTP/1.1)"
        case .invalidMethod: "method is not a token"
        case .invalidRequestTarget: "request-target must be origin-form (/path?query) or absolute-form (http://host/path), without spaces, controls, '#' or non-ASCII bytes"
        case .invalidVersion: "malformed HTTP version (want HTTP/1.1 or HTTP/1.0)"
        case .unsupportedVersion: "HTTP version not supported (only HTTP/1.0 and HTTP/1.1)"
        case .bareCarriageReturn: "CR not followed by LF"
        case .obsoleteLineFolding: "header line starts with whitespace (obsolete line folding is not accepted)"
        case .invalidHeaderName: "header name is empty or not a token"
        case .whitespaceBeforeColon: "whitespace between header name and colon"
        case .missingColon: "header line without a colon"
        case .invalidHeaderValue: "control character in a header value"
        case .missingHost: "HTTP/1.1 request without a Host header"
        case .duplicateHost: "more than one Host header"
        case .invalidHost: "Host is not a valid host[:port]"
        case .invalidContentLength: "Content-Length is not a decimal number"
        case .conflictingContentLength: "Content-Length headers disagree"
        case .contentLengthWithTransferEncoding: "both Content-Length and Transfer-Encoding (refused: request smuggling)"
        case .transferEncodingInHTTP10: "Transfer-Encoding in an HTTP/1.0 request"
        case .chunkedNotFinal: "Transfer-Encoding does not end with chunked: the body's length is unknown"
        case .unsupportedTransferEncoding: "Transfer-Encoding other than chunked is not implemented"
        case .invalidChunkSize: "chunk size is not hexadecimal or too large"
        case .invalidChunkFraming: "chunk line or chunk data not followed by CRLF"
        case .chunkLineTooLong: "chunk-size line too long"
        case .invalidTrailer: "malformed trailer field"
        case .headTooLarge: "request head too large"
        case .tooManyHeaders: "too many header fields"
        case .trailersTooLarge: "trailer section too large"
        case .bodyTooLarge: "request body too large"
        }
    }

    /// `status reason`, for logs.
    public var description: String {
        "\(status) \(reason)"
    }
}
