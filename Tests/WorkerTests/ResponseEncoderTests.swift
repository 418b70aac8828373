import Testing
@testable import Worker

@Suite("ResponseEncoder: how a worker frames what it sends")
struct ResponseEncoderTests {
    private func tail(status: Int, body: String, omitBody: Bool = false,
                      connection: ResponseEncoder.ConnectionHeader = .none) -> String {
        let encoder = ResponseEncoder(pool: "free", pid: 42)
        let buffer = IOBuffer(capacity: 64)
        Array(body.utf8).withUnsafeBytes { bytes in
            encoder.writeTail(status: status, body: bytes, omitBody: omitBody, connection: connection, requestID: 7, into: buffer)
        }
        return String(decoding: buffer.bytes, as: UTF8.self)
    }

    @Test("every answer carries its request's id after the worker's identity")
    func requestID() {
        #expect(tail(status: 200, body: "").hasPrefix("x-bulkhead-pool: free\r\nx-bulkhead-worker: 42\r\nx-request-id: free-42-7\r\n"))
        #expect(ResponseEncoder(pool: "pro", pid: 9).requestID(1234) == "pro-9-1234")
    }

    @Test("204 and 304 end at the empty line: no Content-Length, no body", arguments: [204, 304])
    func noContent(_ status: Int) {
        #expect(tail(status: status, body: "leak") == "x-bulkhead-pool: free\r\nx-bulkhead-worker: 42\r\nx-request-id: free-42-7\r\n\r\n")
        #expect(tail(status: status, body: "leak", connection: .close)
                    == "x-bulkhead-pool: free\r\nx-bulkhead-worker: 42\r\nx-request-id: free-42-7\r\nconnection: close\r\n\r\n")
        #expect(tail(status: status, body: "", connection: .keepAlive)
                    == "x-bulkhead-pool: free\r\nx-bulkhead-worker: 42\r\nx-request-id: free-42-7\r\nconnection: keep-alive\r\n\r\n")
    }

    @Test("other statuses carry their Content-Length, and their body unless HEAD", arguments: [200, 205, 404, 500])
    func withContent(_ status: Int) {
        #expect(tail(status: status, body: "hello") == "x-bulkhead-pool: free\r\nx-bulkhead-worker: 42\r\nx-request-id: free-42-7\r\ncontent-length: 5\r\n\r\nhello")
        #expect(tail(status: status, body: "hello", omitBody: true, connection: .close)
                    == "x-bulkhead-pool: free\r\nx-bulkhead-worker: 42\r\nx-request-id: free-42-7\r\ncontent-length: 5\r\nconnection: close\r\n\r\n")
    }

    @Test("a script's framing headers are dropped; bulkhead's own are not among them (the sandbox refuses those)")
    func reservedNames() {
        func reserved(_ name: String) -> Bool {
            Array(name.utf8).withUnsafeBytes { ResponseEncoder.isReserved($0) }
        }
        for name in ["Content-Length", "transfer-encoding", "Connection", "keep-alive"] {
            #expect(reserved(name), "\(name)")
        }
        for name in ["content-type", "x-bulkhead", "etag", "x-request-id"] {
            #expect(!reserved(name), "\(name)")
        }
    }
}
