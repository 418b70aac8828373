@testable import ControlAPI
import Testing

@Suite("The OpenAPI spec names the address it is served on")
struct ServedSpecTests {
    let spec = "openapi: 3.1.0\nservers:\n  - url: http://127.0.0.1:8080\ncomponents: {}\n"

    @Test func theAPIAddressIsTheServer() {
        #expect(ControlAPI.servedSpec(spec, api: "127.0.0.1:41234", host: "evil.example")
            == "openapi: 3.1.0\nservers:\n  - url: http://127.0.0.1:41234\ncomponents: {}\n")
    }

    @Test func aWildcardAPIServesTheHostTheClientNamed() {
        #expect(ControlAPI.servedSpec(spec, api: "0.0.0.0:8080", host: "api.example:8080").contains("  - url: http://api.example:8080\n"))
        // A host that is not a plain host[:port] changes nothing.
        #expect(ControlAPI.servedSpec(spec, api: "[::]:8080", host: "x\n  - url: http://evil") == spec)
        #expect(ControlAPI.servedSpec(spec, api: nil, host: nil) == spec)
    }
}
