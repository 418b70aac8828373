/// One header line: where its name and value are in the parsed bytes.
public struct HTTPHeaderField: Hashable, Sendable {
    /// The name, as sent (compare case-insensitively).
    public var name: Range<Int>
    /// The value, without leading or trailing spaces and tabs. May be empty.
    public var value: Range<Int>

    /// A field from its two ranges.
    public init(name: Range<Int>, value: Range<Int>) {
        self.name = name
        self.value = value
    }
}

/// The header fields of the last request parsed, in order, as a collection indexed
/// `0..<count`. It shares the parser's storage: use it before the next `parse` and do
/// not keep it (holding it makes that call copy the storage instead of reusing it).
public struct HTTPHeaderFields: RandomAccessCollection, Sendable {
    let fields: [HTTPHeaderField]
    /// How many of `fields` belong to the request (never more than `fields.count`).
    let fieldCount: Int

    /// 0.
    public var startIndex: Int { 0 }
    /// The number of fields.
    public var endIndex: Int { fieldCount }

    /// The field at `position`, which must be in `0..<count`.
    public subscript(position: Int) -> HTTPHeaderField {
        fields[position]
    }
}
