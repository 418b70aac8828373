// MARK: Keys and values

extension EtcdClient {
    /// Reads one key (linearizable: what the leader has committed); `first` of the
    /// answer is the key, nil when it does not exist.
    public func get(_ key: some EtcdBytes, revision: Int64 = 0, serializable: Bool = false) async throws(EtcdError) -> RangeResponse {
        try await range(from: key, to: nil as [UInt8]?, revision: revision, serializable: serializable)
    }

    /// Reads the keys in `[key, end)` (only `key` when `end` is nil; every key from
    /// `key` on when `end` is `[0]`).
    /// - Parameters:
    ///   - revision: the revision to read at, 0 for the current one.
    ///   - limit: at most this many keys, 0 for all; `more` says whether some were left.
    ///   - serializable: answer from the member's own copy (faster, may be stale)
    ///     instead of a linearizable read.
    ///   - keysOnly: leave the values out.
    ///   - countOnly: return only `count`.
    public func range(
        from key: some EtcdBytes, to end: (some EtcdBytes)?, revision: Int64 = 0, limit: Int64 = 0, serializable: Bool = false,
        keysOnly: Bool = false, countOnly: Bool = false
    ) async throws(EtcdError) -> RangeResponse {
        let request = WireRangeRequest(
            key: base64(key.etcdBytes), range_end: end.map { base64($0.etcdBytes) }, limit: limit == 0 ? nil : String(limit),
            revision: revision == 0 ? nil : String(revision), serializable: serializable ? true : nil,
            keys_only: keysOnly ? true : nil, count_only: countOnly ? true : nil)
        return try await call("/v3/kv/range", request, as: WireRangeResponse.self, repeat: .harmless).response
    }

    /// Reads every key starting with `prefix` (an empty prefix: every key). Same
    /// options as `range(from:to:…)`.
    public func range(
        prefix: some EtcdBytes, revision: Int64 = 0, limit: Int64 = 0, serializable: Bool = false, keysOnly: Bool = false,
        countOnly: Bool = false
    ) async throws(EtcdError) -> RangeResponse {
        let bytes = prefix.etcdBytes
        return try await range(
            from: bytes.isEmpty ? [0] : bytes, to: EtcdKeyRange.prefixEnd(bytes), revision: revision, limit: limit,
            serializable: serializable, keysOnly: keysOnly, countOnly: countOnly)
    }

    /// Reads every key starting with `prefix` at one revision, `pageSize` keys per
    /// call, so that no answer grows past what a member sends at once. The first page
    /// fixes the revision (`revision`, or the current one when 0); every later page
    /// is read at it, so the result is the prefix exactly as it was then, whatever is
    /// written meanwhile. Throws `EtcdError.compacted` when the revision is compacted
    /// before the last page: read again.
    public func rangeAll(prefix: some EtcdBytes, pageSize: Int64 = 1000, revision: Int64 = 0) async throws(EtcdError) -> RangeResponse {
        let bytes = prefix.etcdBytes
        let end = EtcdKeyRange.prefixEnd(bytes)
        var start = bytes.isEmpty ? [0] : bytes
        var pinned = revision
        var header: ResponseHeader?
        var kvs: [KeyValue] = []
        while true {
            let page = try await range(from: start, to: end, revision: pinned, limit: max(pageSize, 1))
            if header == nil {
                header = page.header
                pinned = page.header.revision
            }
            kvs.append(contentsOf: page.kvs)
            guard page.more, let last = page.kvs.last else { break }
            // The next page starts just after the last key read: the key with a 0
            // byte appended is the smallest key greater than it.
            start = last.key + [0]
        }
        var answer = RangeResponse(header: header ?? WireHeader.empty, kvs: kvs, more: false, count: Int64(kvs.count))
        answer.header.revision = pinned
        return answer
    }

    /// Writes `value` at `key`.
    /// - Parameters:
    ///   - lease: the lease to attach the key to (it is deleted when the lease ends), 0 for none.
    ///   - prevKV: return the key as it was before.
    public func put(_ key: some EtcdBytes, _ value: some EtcdBytes, lease: Int64 = 0, prevKV: Bool = false) async throws(EtcdError) -> PutResponse {
        let request = WirePutRequest(
            key: base64(key.etcdBytes), value: base64(value.etcdBytes), lease: lease == 0 ? nil : String(lease),
            prev_kv: prevKV ? true : nil)
        return try await call("/v3/kv/put", request, as: WirePutResponse.self, repeat: .once).response
    }

    /// Deletes `key`.
    public func delete(_ key: some EtcdBytes, prevKV: Bool = false) async throws(EtcdError) -> DeleteResponse {
        try await delete(from: key, to: nil as [UInt8]?, prevKV: prevKV)
    }

    /// Deletes every key starting with `prefix` (an empty prefix: every key).
    public func delete(prefix: some EtcdBytes, prevKV: Bool = false) async throws(EtcdError) -> DeleteResponse {
        let bytes = prefix.etcdBytes
        return try await delete(from: bytes.isEmpty ? [0] : bytes, to: EtcdKeyRange.prefixEnd(bytes), prevKV: prevKV)
    }

    /// Deletes the keys in `[key, end)` (only `key` when `end` is nil).
    public func delete(from key: some EtcdBytes, to end: (some EtcdBytes)?, prevKV: Bool = false) async throws(EtcdError) -> DeleteResponse {
        let request = WireDeleteRequest(key: base64(key.etcdBytes), range_end: end.map { base64($0.etcdBytes) }, prev_kv: prevKV ? true : nil)
        return try await call("/v3/kv/deleterange", request, as: WireDeleteResponse.self, repeat: .once).response
    }

    /// Runs `success` when every comparison in `compare` holds, `failure` otherwise,
    /// atomically at one revision. A key may be written only once per transaction
    /// (etcd refuses duplicates).
    public func txn(compare: [Compare], success: [TxnOp], failure: [TxnOp] = []) async throws(EtcdError) -> TxnResponse {
        let request = WireTxnRequest(
            compare: compare.map(WireCompare.init), success: success.map(WireRequestOp.init), failure: failure.map(WireRequestOp.init))
        let writes = (success + failure).contains { op in
            if case .range = op { return false }
            return true
        }
        return try await call("/v3/kv/txn", request, as: WireTxnResponse.self, repeat: writes ? .once : .harmless).response
    }

    /// Drops the history before `revision`: reads and watches at older revisions
    /// fail as `EtcdError.compacted` from then on. With `physical`, the call returns
    /// once the space is freed in the backend.
    @discardableResult
    public func compact(revision: Int64, physical: Bool = false) async throws(EtcdError) -> ResponseHeader {
        let request = WireCompactionRequest(revision: String(revision), physical: physical ? true : nil)
        // A second compaction at the same revision fails, so a lost answer is not retried.
        return try await call("/v3/kv/compaction", request, as: WireHeaderOnly.self, repeat: .once).header
    }
}
