import Foundation

/// A worker binary as a rollout ships it: where the operator's packaging installs it
/// on every host, and its SHA-256. The binary is never copied by bulkhead: each host
/// checks the file it has against `sha256` before a stage puts it on a slot.
///
/// Stored as the binary artifact's content, JSON `{"path", "sha256"}`; a content that
/// is a bare path (from before the hash was recorded) has no hash to check.
public struct BinaryArtifact: Codable, Sendable, Equatable {
    /// The executable's absolute path, the same on every host.
    public var path: String
    /// Its SHA-256 as 64 lower-case hex digits; nil for a bare path.
    public var sha256: String?

    /// A binary at `path` with digest `sha256`.
    public init(path: String, sha256: String?) {
        self.path = path
        self.sha256 = sha256
    }

    /// The binary a stored content names: JSON, or a bare path.
    public init(content: String) {
        if content.hasPrefix("{"), let decoded = try? JSONDecoder().decode(Self.self, from: Data(content.utf8)) {
            self = decoded
        } else {
            self.init(path: content, sha256: nil)
        }
    }

    /// The content to store (keys sorted, so one binary has one content).
    public var content: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// The binary at `path` as it is now: its hash read from the file.
    public static func installed(at path: String) throws -> BinaryArtifact {
        BinaryArtifact(path: path, sha256: try digest(of: path))
    }

    /// Why this host cannot run the binary (missing, not executable, another
    /// build at the path), or nil when it can.
    public func problem() -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            return "binary missing: no file at \(path)"
        }
        guard FileManager.default.isExecutableFile(atPath: path) else { return "binary missing: \(path) is not executable" }
        guard let sha256 else { return nil }
        do {
            let found = try Self.digest(of: path)
            return found == sha256 ? nil : "binary missing: \(path) is another build (sha256 \(found.prefix(12))…, expected \(sha256.prefix(12))…)"
        } catch {
            return "binary missing: cannot read \(path): \(error)"
        }
    }

    /// The SHA-256 of the file at `path`, as hex.
    static func digest(of path: String) throws -> String {
        SHA256Hasher.hex(try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped))
    }
}
