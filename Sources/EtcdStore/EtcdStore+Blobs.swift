import Etcd
import Foundation
import Store

// MARK: - Content by hash, in chunks

extension EtcdStore {
    /// `blob/SHA256/meta`: what the chunks under `blob/SHA256/c/` hold.
    struct BlobMeta: Codable {
        var sha256: String
        var size: Int
        var chunks: Int
        var chunkBytes: Int
    }

    /// Makes the content `bytes` (whose hash is `sha256`) part of the write `attempt`:
    /// a known blob's meta is compared and rewritten (so that a garbage collection
    /// that found it unreferenced can no longer delete it); a new blob's chunks are
    /// written now, each in a request of its own, and the transaction compares their
    /// revisions and creates the meta. The caller must have read the meta key in
    /// `attempt` (or lets this read it).
    func stageBlob(_ bytes: [UInt8], sha256: String, in attempt: Attempt) async throws {
        let metaKey = Keys.blobMeta(sha256)
        if let kv = try await attempt.get(metaKey) {
            let meta = try decode(BlobMeta.self, kv)
            guard meta.size == bytes.count, meta.sha256 == sha256 else {
                throw StoreError.remoteUnreadable(
                    store: location, key: kv.keyString,
                    detail: "it says \(meta.size) bytes of \(meta.sha256), the content is \(bytes.count) bytes of \(sha256)")
            }
            try attempt.put(metaKey, meta)
            return
        }
        let size = configuration.chunkBytes
        var chunks = 0
        var offset = 0
        while offset < bytes.count {
            let chunk = Array(bytes[offset..<min(offset + size, bytes.count)])
            let chunkKey = key(Keys.blobChunk(sha256, chunks))
            let written = try await client.put(chunkKey, chunk)
            // The chunk must still be this write at commit: a garbage collection may
            // remove chunks that no meta covers yet.
            attempt.require(.modRevision(chunkKey, .equal, written.header.revision))
            chunks += 1
            offset += size
        }
        try attempt.put(metaKey, BlobMeta(sha256: sha256, size: bytes.count, chunks: chunks, chunkBytes: size))
    }

    /// The content stored as `sha256`, read at the reader's revision and checked
    /// against its meta and its hash.
    func loadBlob(_ sha256: String, reader: Reader) async throws -> [UInt8] {
        guard let metaKV = try await reader.get(Keys.blobMeta(sha256)) else {
            throw StoreError.remoteUnreadable(
                store: location, key: key(Keys.blobMeta(sha256)), detail: "a version refers to content that is not stored")
        }
        let meta = try decode(BlobMeta.self, metaKV)
        // One chunk per answer: a gateway answer is kept well below gRPC's 4 MiB.
        let chunks = try await reader.list(Keys.blobChunks(sha256), pageSize: 1)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(meta.size)
        for chunk in chunks { bytes += chunk.value }
        guard chunks.count == meta.chunks, bytes.count == meta.size, SHA256Hasher.hex(bytes) == sha256 else {
            throw StoreError.remoteUnreadable(
                store: location, key: key(Keys.blob(sha256)),
                detail: "\(chunks.count) chunks of \(bytes.count) bytes where the meta says \(meta.chunks) of \(meta.size), "
                    + "or their hash differs")
        }
        return bytes
    }

    /// The contents `hashes` as text, by hash, read a few at a time (each content
    /// once, however many scripts share it).
    func loadTexts(_ hashes: Set<String>, reader: Reader) async throws -> [String: String] {
        var pending = hashes.sorted().makeIterator()
        var texts: [String: String] = [:]
        try await withThrowingTaskGroup(of: (String, String).self) { group in
            for _ in 0..<8 {
                guard let sha = pending.next() else { break }
                group.addTask { (sha, try await self.loadText(sha, reader: reader)) }
            }
            while let (sha, text) = try await group.next() {
                texts[sha] = text
                if let next = pending.next() {
                    group.addTask { (next, try await self.loadText(next, reader: reader)) }
                }
            }
        }
        return texts
    }

    /// The content as text (any bytes a String held: NUL bytes included).
    func loadText(_ sha256: String, reader: Reader) async throws -> String {
        String(decoding: try await loadBlob(sha256, reader: reader), as: UTF8.self)
    }
}

// MARK: - Maintenance

/// What ``EtcdStore/collectGarbage()`` removed.
public struct EtcdGarbageReport: Sendable, Equatable {
    /// Blobs (contents) no script or artifact version refers to, removed.
    public var removedBlobs: Int
    /// Keys deleted (metas and chunks).
    public var removedKeys: Int
    /// Blobs kept, because a version refers to them or they changed meanwhile.
    public var keptBlobs: Int

    /// A report.
    public init(removedBlobs: Int, removedKeys: Int, keptBlobs: Int) {
        self.removedBlobs = removedBlobs
        self.removedKeys = removedKeys
        self.keptBlobs = keptBlobs
    }
}

extension EtcdStore {
    /// Deletes the contents no script or artifact version refers to (and chunks left
    /// by an upload that failed before its transaction), safely beside writers: each
    /// blob is deleted by a transaction that compares its keys' revisions with those
    /// seen while no version referred to it, and every write that starts referring to
    /// a blob changes its meta. Not audited: it changes nothing a version shows.
    @discardableResult
    public func collectGarbage() throws -> EtcdGarbageReport {
        try read("collect unreferenced contents") { reader in
            try await self.collect(reader)
        }
    }

    private func collect(_ reader: Reader) async throws -> EtcdGarbageReport {
        // The references first: this read fixes the revision every later read uses.
        var referenced = Set<String>()
        for kv in try await reader.list(Keys.allScriptVersions) {
            referenced.insert(try decode(VersionRecord.self, kv).sha256)
        }
        for kv in try await reader.list(Keys.artifacts) where kv.keyString.contains("/v/") {
            referenced.insert(try decode(VersionRecord.self, kv).sha256)
        }
        // Every blob key (without values), at the same revision.
        struct Seen {
            var meta: Int64 = 0
            var chunks: [(key: [UInt8], revision: Int64)] = []
        }
        var blobs: [String: Seen] = [:]
        let blobPrefix = key(Keys.blobs)
        var start = Array(blobPrefix.utf8)
        let end = EtcdKeyRange.prefixEnd(start)
        while true {
            let page = try await client.range(from: start, to: end, revision: reader.revision, limit: 1000, keysOnly: true)
            for kv in page.kvs {
                let relative = kv.keyString.dropFirst(blobPrefix.count)
                let parts = relative.split(separator: "/", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let sha = String(parts[0])
                if parts[1] == "meta" {
                    blobs[sha, default: Seen()].meta = kv.modRevision
                } else {
                    blobs[sha, default: Seen()].chunks.append((kv.key, kv.modRevision))
                }
            }
            guard page.more, let last = page.kvs.last else { break }
            start = last.key + [0]
        }
        var report = EtcdGarbageReport(removedBlobs: 0, removedKeys: 0, keptBlobs: 0)
        for (sha, seen) in blobs.sorted(by: { $0.key < $1.key }) {
            if referenced.contains(sha) {
                report.keptBlobs += 1
                continue
            }
            // Unchanged since the references were read (an absent meta stays absent).
            var compares = [Compare.modRevision(key(Keys.blobMeta(sha)), .equal, seen.meta)]
            compares += seen.chunks.map { Compare.modRevision($0.key, .equal, $0.revision) }
            let answer = try await client.txn(compare: compares, success: [.delete(prefix: key(Keys.blob(sha)))])
            if answer.succeeded {
                report.removedBlobs += 1
                if case .delete(let deleted)? = answer.responses.first { report.removedKeys += Int(deleted.deleted) }
            } else {
                report.keptBlobs += 1
            }
        }
        return report
    }

    /// Compacts etcd's history up to `keepingRevisions` revisions before the current
    /// one (etcd's history is the whole cluster's, not only this prefix's): reads and
    /// watches at older revisions fail as compacted from then on, and a host agent
    /// behind them resyncs. Returns the revision compacted to, or nil when there was
    /// nothing to compact (a young store, or compacted there already).
    @discardableResult
    public func compact(keepingRevisions: Int64) throws -> Int64? {
        guard keepingRevisions >= 0 else {
            throw StoreError.invalidArgument("revisions to keep must be 0 or more, got \(keepingRevisions)")
        }
        return try read("compact etcd's history") { reader -> Int64? in
            _ = try await reader.get(Keys.auditNext)
            let target = reader.revision - keepingRevisions
            guard target > 1 else { return nil }
            do {
                try await self.client.compact(revision: target)
            } catch EtcdError.compacted {
                return nil
            }
            return target
        }
    }
}
