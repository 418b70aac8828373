import CLuaSandbox

/// One request header as two byte views (name as received; the sandbox lower-cases
/// it for the script).
///
/// Its only stored property is the C `bh_header`, so a buffer of `LuaHeader`s has the
/// layout C reads: the sandbox passes it on without copying.
public struct LuaHeader {
    @usableFromInline var raw: bh_header

    /// A header whose name and value are views of bytes the caller keeps alive for
    /// the call.
    @inlinable
    public init(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        raw = bh_header(
            name: bh_bytes(ptr: name.baseAddress, len: name.count),
            value: bh_bytes(ptr: value.baseAddress, len: value.count)
        )
    }

    /// The header's name.
    @inlinable
    public var name: UnsafeRawBufferPointer {
        get { UnsafeRawBufferPointer(start: raw.name.ptr, count: raw.name.len) }
        set { raw.name = bh_bytes(ptr: newValue.baseAddress, len: newValue.count) }
    }

    /// The header's value.
    @inlinable
    public var value: UnsafeRawBufferPointer {
        get { UnsafeRawBufferPointer(start: raw.value.ptr, count: raw.value.len) }
        set { raw.value = bh_bytes(ptr: newValue.baseAddress, len: newValue.count) }
    }
}

/// A request as views of bytes the caller owns (its receive buffer), valid for the
/// duration of one ``LuaScript/handle(_:_:)`` call. Nothing is copied into Swift
/// values: C pushes each view into Lua with `lua_pushlstring`.
public struct LuaRequest {
    @usableFromInline var raw: bh_request

    /// A request from its parts. `query` is the raw query string without `?` (empty
    /// if none); `body` is empty when there is none; `headers` in arrival order.
    @inlinable
    public init(
        method: UnsafeRawBufferPointer,
        path: UnsafeRawBufferPointer,
        query: UnsafeRawBufferPointer,
        headers: UnsafeBufferPointer<LuaHeader>,
        body: UnsafeRawBufferPointer
    ) {
        raw = bh_request(
            method: bh_bytes(ptr: method.baseAddress, len: method.count),
            path: bh_bytes(ptr: path.baseAddress, len: path.count),
            query: bh_bytes(ptr: query.baseAddress, len: query.count),
            body: bh_bytes(ptr: body.baseAddress, len: body.count),
            headers: UnsafeRawPointer(headers.baseAddress),
            header_count: headers.count
        )
    }

    /// The request method (`GET`).
    @inlinable
    public var method: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: raw.method.ptr, count: raw.method.len) }
    /// The path, without the query string.
    @inlinable
    public var path: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: raw.path.ptr, count: raw.path.len) }
    /// The raw query string without `?`; empty if none.
    @inlinable
    public var query: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: raw.query.ptr, count: raw.query.len) }
    /// The body; empty if none.
    @inlinable
    public var body: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: raw.body.ptr, count: raw.body.len) }
    /// The headers in arrival order.
    @inlinable
    public var headers: UnsafeBufferPointer<LuaHeader> {
        UnsafeBufferPointer(start: raw.headers?.assumingMemoryBound(to: LuaHeader.self), count: raw.header_count)
    }
}
