#if canImport(Glibc)
import Glibc
#endif

/// Why bulkhead refuses a path of its data directory. Each names the path and says
/// what to do; nothing is read from or written to a refused path.
///
/// Why refuse rather than repair: a file another user could plant or swap may already
/// have been used against us (a token they know, a link onto a file of ours), and only
/// a person can tell whether that happened.
public enum DataDirectoryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path is a symbolic link where bulkhead needs the file or directory itself:
    /// following it would read or write wherever the link's maker chose.
    case symbolicLink(path: String)
    /// Another user owns the path.
    case wrongOwner(path: String, owner: uid_t, user: uid_t)
    /// Its group or others may write it; in a directory that means create, swap or
    /// remove the entries bulkhead trusts.
    case writableByOthers(path: String, mode: mode_t)
    /// A file that holds secrets (tokens) may be read by its group or others.
    case readableByOthers(path: String, mode: mode_t)
    /// Not the kind of file expected: `expected` is "directory", "regular file", ….
    case wrongKind(path: String, expected: String)
    /// A file with more than one hard link: the same bytes live under another name,
    /// possibly one bulkhead does not control.
    case hardLinked(path: String, links: Int)
    /// A system call on the path failed.
    case system(path: String, operation: String, code: Int32)

    /// The path refused.
    public var path: String {
        switch self {
        case .symbolicLink(let path), .wrongOwner(let path, _, _), .writableByOthers(let path, _),
             .readableByOthers(let path, _), .wrongKind(let path, _), .hardLinked(let path, _), .system(let path, _, _):
            path
        }
    }

    /// One line for a person: what is wrong with which path, and what to do.
    public var description: String {
        switch self {
        case .symbolicLink(let path):
            "\(path) is a symbolic link; bulkhead never follows links inside its data directory: "
                + "remove it (serve creates what it needs) or put the real file or directory there"
        case .wrongOwner(let path, let owner, let user):
            "\(path) is owned by uid \(owner), not by you (uid \(user)): remove it or fix its owner"
        case .writableByOthers(let path, let mode):
            "\(path) can be written by its group or others (mode \(Self.octal(mode))), so they could swap what bulkhead "
                + "reads there: check that nothing in it was replaced, then chmod go-w it (or remove it)"
        case .readableByOthers(let path, let mode):
            "\(path) holds secrets but can be read by its group or others (mode \(Self.octal(mode))): "
                + "treat them as leaked and remove the file (serve writes a new admin token), or chmod 600 it if nobody else can have read it"
        case .wrongKind(let path, let expected):
            "\(path) is not a \(expected): remove it (serve creates what it needs)"
        case .hardLinked(let path, let links):
            "\(path) has \(links) hard links, so its bytes also live under a name bulkhead does not control: remove it"
        case .system(let path, let operation, let code):
            "cannot \(operation) \(path): \(String(cString: strerror(code)))"
        }
    }

    /// `0o755` as `0755`.
    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
