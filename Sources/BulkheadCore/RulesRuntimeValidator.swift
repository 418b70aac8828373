// RuntimeValidator lives in a Rules*.swift file because this part of BulkheadCore
// keeps the platform-artifact validators together (RulesValidator.swift beside it).

/// What a runtime artifact that passed ``RuntimeValidator`` holds.
public struct RuntimeSummary: Sendable, Equatable {
    /// Size of the file in bytes.
    public var byteCount: Int
    /// Lines in the file.
    public var lineCount: Int

    /// A summary with every field given.
    public init(byteCount: Int, lineCount: Int) {
        self.byteCount = byteCount
        self.lineCount = lineCount
    }
}

/// Why a runtime artifact was refused by ``RuntimeValidator``.
public struct RuntimeValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What failed: `runtime: 300000 bytes, more than the limit of 262144 bytes (256
    /// KiB)`, `runtime: not valid UTF-8 at byte 17`, ….
    public var message: String

    /// A refusal with `message`.
    public init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// The checks of a runtime artifact (one Lua file) that need no Lua: its size and
/// its text. The syntax check is the sandbox's (`PlatformRuntime.checkSyntax`), which
/// compiles the file without running it; whether it defines `on_request` shows only
/// when a worker loads it.
///
/// Pure: no I/O, no Lua.
public enum RuntimeValidator {
    /// The largest runtime file, in bytes (256 KiB).
    public static let maximumBytes = 256 * 1024

    /// Checks `data`: not empty, at most ``maximumBytes``, Lua source rather than a
    /// precompiled chunk, valid UTF-8.
    public static func validate(_ data: [UInt8]) -> Result<RuntimeSummary, RuntimeValidationError> {
        guard !data.isEmpty else {
            return .failure(RuntimeValidationError("runtime: the file is empty; a runtime must define function on_request(req, rules)"))
        }
        guard data.count <= maximumBytes else {
            return .failure(RuntimeValidationError("runtime: \(data.count) bytes, more than the limit of \(maximumBytes) bytes (256 KiB)"))
        }
        // "\x1bLua": the workers load text only, so bytecode would fail there.
        guard data[0] != 0x1B else {
            return .failure(RuntimeValidationError("runtime: a precompiled Lua chunk; only Lua source is accepted"))
        }
        if let offset = firstInvalidUTF8(data) {
            return .failure(RuntimeValidationError("runtime: not valid UTF-8 at byte \(offset + 1)"))
        }
        let lines = data.reduce(into: 1) { count, byte in
            if byte == UInt8(ascii: "\n") { count += 1 }
        }
        return .success(RuntimeSummary(byteCount: data.count, lineCount: data.last == UInt8(ascii: "\n") ? lines - 1 : lines))
    }

    /// Why `data` is refused, or nil when it passes.
    public static func refusal(_ data: [UInt8]) -> String? {
        if case .failure(let error) = validate(data) {
            return error.message
        }
        return nil
    }

    /// The offset of the first byte that does not start a valid UTF-8 sequence, or nil.
    private static func firstInvalidUTF8(_ data: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = data.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                offset += encoded.count
            case .error:
                return offset
            case .emptyInput:
                return nil
            }
        }
    }
}
