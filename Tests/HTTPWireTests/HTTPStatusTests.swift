import HTTPWire
import Testing

@Suite("Reason phrases")
struct HTTPStatusTests {
    static let phrases: [(Int, String)] = [
        (100, "Continue"), (200, "OK"), (204, "No Content"), (301, "Moved Permanently"),
        (304, "Not Modified"), (400, "Bad Request"), (403, "Forbidden"), (404, "Not Found"),
        (408, "Request Timeout"), (413, "Content Too Large"), (421, "Misdirected Request"),
        (431, "Request Header Fields Too Large"), (500, "Internal Server Error"),
        (501, "Not Implemented"), (503, "Service Unavailable"), (505, "HTTP Version Not Supported"),
        (299, ""), (0, ""), (-1, ""), (1000, ""),
    ]

    @Test("reason phrases", arguments: phrases)
    func phrase(_ code: Int, _ phrase: String) {
        #expect(HTTPStatus.reasonPhrase(code) == phrase)
    }

    @Test("every status a parse error carries has a phrase")
    func parseErrorStatuses() {
        for status in [400, 413, 431, 501, 505] {
            #expect(!HTTPStatus.reasonPhrase(status).isEmpty)
        }
    }
}
