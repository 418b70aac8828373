@testable import Etcd
import Foundation
import Testing

@Suite("etcd watches", .serialized)
struct WatchTests {
    @Test("a watch from a revision sees exactly the puts and deletes after it, in order")
    func watchFromRevision() async throws {
        try await withEtcd { _, client in
            _ = try await client.put("w/before", "old")
            let start = try await client.put("w/a", "1")
            _ = try await client.put("other/x", "not watched")
            _ = try await client.put("w/b", "2")
            _ = try await client.delete("w/a")
            _ = try await client.put("w/b", "3")

            var expected: [(WatchEvent.Kind, String, String, Int64)] = [
                (.put, "w/a", "1", start.header.revision), (.put, "w/b", "2", start.header.revision + 2),
                (.delete, "w/a", "", start.header.revision + 3), (.put, "w/b", "3", start.header.revision + 4),
            ]
            var seen: [WatchEvent] = []
            var created = false
            let watch = client.watch("w/", prefix: true, startRevision: start.header.revision, prevKV: true)
            for try await answer in watch {
                if answer.created {
                    created = true
                    // Once created, write more: they must follow the history, in order.
                    let later = try await client.put("w/c", "4")
                    expected.append((.put, "w/c", "4", later.header.revision))
                    continue
                }
                seen.append(contentsOf: answer.events)
                #expect(answer.events.allSatisfy { $0.kv.modRevision <= answer.header.revision })
                if seen.count >= expected.count { break }
            }
            #expect(created)
            #expect(seen.count == expected.count)
            for (event, wanted) in zip(seen, expected) {
                #expect(event.kind == wanted.0)
                #expect(event.kv.keyString == wanted.1)
                #expect(event.kv.valueString == wanted.2)
                #expect(event.kv.modRevision == wanted.3)
            }
            // prevKV: the delete carries what was deleted, the second put of w/b its first value.
            #expect(seen[2].prevKV?.valueString == "1")
            #expect(seen[3].prevKV?.valueString == "2")
            #expect(seen[1].kv.version == 1 && seen[3].kv.version == 2 && seen[2].kv.version == 0)
        }
    }

    @Test("a watch from a compacted revision ends with compacted(compactRevision)")
    func watchCompacted() async throws {
        try await withEtcd { _, client in
            let first = try await client.put("k", "1")
            _ = try await client.put("k", "2")
            let third = try await client.put("k", "3")
            try await client.compact(revision: third.header.revision)
            var answers = 0
            do {
                for try await _ in client.watch("k", startRevision: first.header.revision) { answers += 1 }
                Issue.record("the watch ended without an error")
            } catch {
                #expect(error as? EtcdError == .compacted(compactRevision: third.header.revision))
                print("watch from compacted revision \(first.header.revision): \(error)")
            }
            #expect(answers <= 1)
        }
    }

    @Test("a watch sees many events in order across the stream's chunks; ending the loop closes it")
    func watchManyEvents() async throws {
        try await withEtcd { _, client in
            let begin = try await client.put("m/start", "").header.revision
            let count = 300
            let writer = Task {
                for index in 0..<count { _ = try await client.put("m/\(index % 7)", String(repeating: "v", count: index)) }
            }
            var revisions: [Int64] = []
            let start = ContinuousClock.now
            for try await answer in client.watch("m/", prefix: true, startRevision: begin + 1) {
                revisions.append(contentsOf: answer.events.map(\.kv.modRevision))
                if revisions.count >= count { break }
            }
            try await writer.value
            print("watch: \(revisions.count) events in \(String(format: "%.0f", (ContinuousClock.now - start).seconds * 1000)) ms")
            #expect(revisions == Array((begin + 1)...(begin + Int64(count))))
        }
    }

    @Test("progress notifications arrive on a quiet watch")
    func progressNotify() async throws {
        try await withEtcd(extraArguments: ["--experimental-watch-progress-notify-interval", "500ms"]) { _, client in
            let revision = try await client.put("p", "1").header.revision
            var progress = 0
            for try await answer in client.watch("quiet", progressNotify: true) {
                if answer.isProgressNotification {
                    #expect(answer.header.revision == revision)
                    progress += 1
                    if progress == 2 { break }
                }
            }
            #expect(progress == 2)
        }
    }

    @Test("the stream splitter finds each object wherever the chunks cut it")
    func splitter() throws {
        let objects = [#"{"result":{"created":true}}"#, #"{"result":{"events":[{"kv":{"key":"YQ=="}}]}}"#, #"{"error":{"grpc_code":14}}"#]
        let stream = Array((objects[0] + "\n" + objects[1] + "\n" + objects[2]).utf8)
        for cut in 1..<stream.count {
            var splitter = JSONLineSplitter()
            var found = try splitter.feed(stream[..<cut]) + splitter.feed(stream[cut...])
            if let last = splitter.finish() { found.append(last) }
            #expect(found.map { String(decoding: $0, as: UTF8.self) } == objects)
        }
        var bytewise = JSONLineSplitter()
        var found: [[UInt8]] = []
        for byte in stream + Array("\n\n".utf8) { found += try bytewise.feed([byte]) }
        #expect(bytewise.finish() == nil)
        #expect(found.count == 3)
    }
}
