import CLuaSandbox

/// The response a script returned, as views into Lua strings that stay anchored on
/// the Lua stack only while the closure given to ``LuaScript/handle(_:_:)`` runs:
/// copy what you keep (into the output buffer, typically) before it returns.
///
/// A string result is status 200 with `content-type: text/plain`; a table result has
/// been checked (status 200...599, header names are tokens and none of bulkhead's own
/// `x-bulkhead-*` and `x-request-id`, no control characters in values, at most 64
/// headers, body a string). A 204 or 304 has an empty body whatever the script gave:
/// those statuses have no content, and the caller writes no Content-Length for them.
public struct LuaResponse {
    @usableFromInline let raw: UnsafePointer<bh_response>

    @usableFromInline init(_ raw: UnsafePointer<bh_response>) {
        self.raw = raw
    }

    /// The status code, 200...599 (a 1xx is interim, the server's own: refused).
    @inlinable
    public var status: Int { Int(raw.pointee.status) }

    /// How many headers the script set.
    @inlinable
    public var headerCount: Int { Int(raw.pointee.header_count) }

    /// Header `index` (0..<headerCount) as the script wrote it (names are not
    /// lower-cased; numbers given as values are already text).
    @inlinable
    public func header(at index: Int) -> (name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        precondition(index >= 0 && index < headerCount, "header index out of range")
        let header = bh_response_header(raw, Int32(index))
        return (
            UnsafeRawBufferPointer(start: header.name.ptr, count: header.name.len),
            UnsafeRawBufferPointer(start: header.value.ptr, count: header.value.len)
        )
    }

    /// The body (empty when the script gave none).
    @inlinable
    public var body: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: raw.pointee.body.ptr, count: raw.pointee.body.len)
    }
}
