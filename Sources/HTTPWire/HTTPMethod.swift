/// The method, when it is one of the standard ones (RFC 9110 §9, and PATCH). Methods
/// are case-sensitive: `get` is a valid token but `.other`.
public enum HTTPMethod: Hashable, Sendable {
    /// GET
    case get
    /// HEAD: the response has no body.
    case head
    /// POST
    case post
    /// PUT
    case put
    /// DELETE
    case delete
    /// OPTIONS
    case options
    /// PATCH (RFC 5789)
    case patch
    /// CONNECT
    case connect
    /// TRACE
    case trace
    /// Any other token: read the bytes of `HTTPRequestHead.method`.
    case other

    /// Recognises the method in `bytes[range]`.
    init(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        switch range.count {
        case 3:
            if ASCII.equals(bytes, range, "GET") { self = .get }
            else if ASCII.equals(bytes, range, "PUT") { self = .put }
            else { self = .other }
        case 4:
            if ASCII.equals(bytes, range, "POST") { self = .post }
            else if ASCII.equals(bytes, range, "HEAD") { self = .head }
            else { self = .other }
        case 5:
            if ASCII.equals(bytes, range, "PATCH") { self = .patch }
            else if ASCII.equals(bytes, range, "TRACE") { self = .trace }
            else { self = .other }
        case 6:
            self = ASCII.equals(bytes, range, "DELETE") ? .delete : .other
        case 7:
            if ASCII.equals(bytes, range, "OPTIONS") { self = .options }
            else if ASCII.equals(bytes, range, "CONNECT") { self = .connect }
            else { self = .other }
        default:
            self = .other
        }
    }
}
