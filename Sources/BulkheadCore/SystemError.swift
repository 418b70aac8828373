#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, with what was being done and `errno`'s words.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    /// What was attempted, e.g. `bind 127.0.0.1:8101`.
    public var operation: String
    /// The `errno` value.
    public var code: Int32

    /// Captures the current `errno`.
    public init(_ operation: String, code: Int32 = errno) {
        self.operation = operation
        self.code = code
    }

    /// `bind 127.0.0.1:8101: Address already in use`.
    public var description: String {
        "\(operation): \(String(cString: strerror(code)))"
    }
}
