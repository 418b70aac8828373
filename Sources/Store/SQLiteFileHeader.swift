import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The first 100 bytes of an existing store file, checked without SQLite.
///
/// Why before SQLite: a connection may write to the file it opens (turning WAL on,
/// replaying a journal), and a file that is not ours, or was cut short, must be
/// refused untouched. SQLite itself would open a truncated file and only fail, or
/// not, when a query reaches a missing page.
/// Layout: <https://www.sqlite.org/fileformat.html#the_database_header>.
struct SQLiteFileHeader {
    /// `SQLite format 3` and a NUL: the first 16 bytes of every SQLite 3 database.
    static let magic = Array("SQLite format 3\u{0}".utf8)

    /// Refuses `path` (which exists) when it is not a bulkhead store or is visibly
    /// truncated. A file that passes may still be corrupt inside: `quick_check` follows.
    static func check(path: String, applicationID expected: Int32 = StoreSchema.applicationID) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw StoreError.cannotOpen(path: path, String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw StoreError.cannotOpen(path: path, "it is not a regular file")
        }
        let size = Int(info.st_size)
        if size == 0 {
            // A store is created whole under another name and linked into place, so an
            // empty file here was cut to nothing, or made by something else.
            throw StoreError.truncated(path: path, "it is empty (0 bytes)")
        }
        let bytes = try FileSystem.readPrefix(of: path, count: 100)
        let compared = min(bytes.count, magic.count)
        guard bytes.prefix(compared).elementsEqual(magic.prefix(compared)) else {
            throw StoreError.notSQLite(path: path)
        }
        guard bytes.count == 100 else {
            throw StoreError.truncated(path: path, "it has \(size) bytes, fewer than the 100 of an SQLite header")
        }
        let applicationID = Int32(bitPattern: bigEndian32(bytes, at: 68))
        guard applicationID == expected else {
            throw StoreError.notBulkhead(path: path, applicationID: applicationID)
        }
        let pageSizeField = Int(bytes[16]) << 8 | Int(bytes[17])
        let pageSize = pageSizeField == 1 ? 65536 : pageSizeField
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw StoreError.corrupt(path: path, "its header gives an impossible page size (\(pageSizeField))")
        }
        // With committed frames in the write-ahead log, the newest pages live there and
        // the main file may lag behind its own header (a checkpoint writes page 1 first):
        // then leave it to SQLite's recovery and quick_check.
        guard !FileSystem.hasWALFrames(path + "-wal") else { return }
        // The in-header page count is only meaningful when its "valid for" stamp
        // matches the change counter (older writers did not keep it up to date).
        let pageCount = Int(bigEndian32(bytes, at: 28))
        let changeCounter = bigEndian32(bytes, at: 24)
        let validFor = bigEndian32(bytes, at: 92)
        if pageCount > 0, changeCounter == validFor, size < pageCount * pageSize {
            throw StoreError.truncated(
                path: path,
                "its header counts \(pageCount) pages of \(pageSize) bytes (\(pageCount * pageSize) bytes), "
                    + "but the file has \(size) bytes")
        }
        guard size % pageSize == 0 else {
            throw StoreError.corrupt(path: path, "its \(size) bytes are not a whole number of \(pageSize)-byte pages")
        }
    }

    /// Refuses the store when its write-ahead log (`path-wal`) exists but does not
    /// start with a sound log header.
    ///
    /// Why: SQLite treats a log with a bad header as empty and overwrites it with the
    /// next commit, so the newest commits, which may live only in the log, would be
    /// lost without a word. A missing or empty log is normal. Layout:
    /// <https://www.sqlite.org/fileformat.html#the_write_ahead_log>.
    static func checkLog(of path: String) throws {
        let logPath = path + "-wal"
        var info = stat()
        guard stat(logPath, &info) == 0, info.st_size > 0 else { return }
        let header = try FileSystem.readPrefix(of: logPath, count: 32)
        guard header.count == 32 else {
            throw StoreError.damagedLog(path: path, "it has \(info.st_size) bytes, fewer than the 32 of a log header")
        }
        let magic = bigEndian32(header, at: 0)
        guard magic == 0x377f_0682 || magic == 0x377f_0683 else {
            throw StoreError.damagedLog(path: path, "its header is not that of an SQLite write-ahead log")
        }
        guard bigEndian32(header, at: 4) == 3_007_000 else {
            throw StoreError.damagedLog(path: path, "its header gives an unknown format version (\(bigEndian32(header, at: 4)))")
        }
        let pageSize = Int(bigEndian32(header, at: 8))
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw StoreError.damagedLog(path: path, "its header gives an impossible page size (\(pageSize))")
        }
        // The header's own checksum covers its first 24 bytes; the magic's low bit says
        // whether the words are summed big-endian.
        let (first, second) = logChecksum(header, count: 24, bigEndian: magic & 1 == 1)
        guard first == bigEndian32(header, at: 24), second == bigEndian32(header, at: 28) else {
            throw StoreError.damagedLog(path: path, "its header fails its checksum")
        }
    }

    /// SQLite's log checksum over the first `count` bytes (a multiple of 8).
    private static func logChecksum(_ bytes: [UInt8], count: Int, bigEndian: Bool) -> (UInt32, UInt32) {
        func word(_ offset: Int) -> UInt32 {
            bigEndian ? bigEndian32(bytes, at: offset) : bigEndian32(bytes, at: offset).byteSwapped
        }
        var s0: UInt32 = 0
        var s1: UInt32 = 0
        for offset in stride(from: 0, to: count, by: 8) {
            s0 = s0 &+ word(offset) &+ s1
            s1 = s1 &+ word(offset + 4) &+ s0
        }
        return (s0, s1)
    }

    private static func bigEndian32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
            | UInt32(bytes[offset + 3])
    }
}
