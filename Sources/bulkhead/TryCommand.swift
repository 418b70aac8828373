#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BulkheadCore
import Foundation
import HTTPWire
import LuaSandbox

/// `bulkhead try`: one request through exactly the sandbox and limits a worker of
/// the cohort uses, the way `wrangler dev` lets a customer check a script first.
struct TryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "try",
        abstract: "Run a script once on a request, under a cohort's limits.",
        discussion: """
            Prints the response like `curl -i` and exits 0, or prints the error kind and message on \
            stderr and exits 1. Kinds: syntax, script-error, limit-cpu, limit-memory, limit-wall, too-large.
            """
    )

    @Argument(help: "The Lua script.")
    var script: String
    @Option(help: "Whose limits to use (a file in --cohorts).")
    var cohort: String = "free"
    @Option(help: "The directory of cohort files.")
    var cohorts: String = "cohorts"
    @Option(help: "Request method.")
    var method: String = "GET"
    @Option(help: "Request path, with an optional ?query.")
    var path: String = "/"
    @Option(name: .customLong("header"), help: "A request header, NAME:VALUE (repeatable).")
    var headers: [String] = []
    @Option(help: "Request body.")
    var body: String?

    func run() throws {
        let limits = try loadLimits()
        guard let data = FileManager.default.contents(atPath: script) else {
            throw fail("script-error", "cannot read \(script)")
        }
        guard data.count <= limits.maxScriptBytes else {
            throw fail("too-large", "\(script) is \(data.count) bytes; the \(cohort) cohort allows \(limits.maxScriptBytes)")
        }
        let requestBody = Array((body ?? "").utf8)
        guard requestBody.count <= limits.maxBodyBytes else {
            throw fail("too-large", "the body is \(requestBody.count) bytes; the \(cohort) cohort allows \(limits.maxBodyBytes)")
        }
        var parsedHeaders: [(name: [UInt8], value: [UInt8])] = []
        for header in headers {
            guard let colon = header.firstIndex(of: ":") else {
                throw ValidationError("--header takes NAME:VALUE, got '\(header)'")
            }
            let name = header[..<colon].trimmingCharacters(in: .whitespaces)
            let value = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            parsedHeaders.append((Array(name.utf8), Array(value.utf8)))
        }
        let pathPart = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let requestPath = Array(String(pathPart[0]).utf8)
        let query = Array((pathPart.count > 1 ? String(pathPart[1]) : "").utf8)
        let methodBytes = Array(method.uppercased().utf8)

        // The same watchdog a worker has: a C call the hook cannot interrupt ends
        // the process, reported as the wall limit.
        let watchdog = Watchdog(margin: .milliseconds(500)) { chunkName, elapsed in
            FileHandle.standardError.write(Data("limit-wall: \(chunkName): still running \(elapsed) after the \(limits.wallMilliseconds) ms deadline, inside a C call the instruction hook cannot interrupt; ended\n".utf8))
            _exit(1)
        }
        let name = URL(fileURLWithPath: script).lastPathComponent
        let state: LuaScript
        do {
            state = try LuaScript(
                chunkName: name, source: [UInt8](data),
                limits: SandboxLimits(instructions: limits.instructions, memoryBytes: limits.memoryBytes,
                                      wallMilliseconds: limits.wallMilliseconds),
                watchdog: watchdog,
                log: { line in FileHandle.standardError.write(Data("log: \(line.debugDescription)\n".utf8)) })
        } catch {
            throw fail(error.kind.rawValue, error.message)
        }

        let result = withBuffers(methodBytes, requestPath, query, requestBody, parsedHeaders) { request in
            state.handle(request) { response -> String in
                var text = "HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
                for index in 0..<response.headerCount {
                    let header = response.header(at: index)
                    text += String(decoding: header.name, as: UTF8.self) + ": " + String(decoding: header.value, as: UTF8.self) + "\r\n"
                }
                // As a worker frames it: a 204 or 304 has no Content-Length (its body
                // was already dropped by the sandbox's response conversion).
                if response.status == 204 || response.status == 304 { return text + "\r\n" }
                text += "content-length: \(response.body.count)\r\n\r\n"
                return text + String(decoding: response.body, as: UTF8.self)
            }
        }
        switch result {
        case .success(let text):
            FileHandle.standardOutput.write(Data(text.utf8))
        case .failure(let error):
            throw fail(error.kind.rawValue, error.message)
        }
    }

    private func loadLimits() throws -> CohortConfiguration.Limits {
        let file = cohorts + "/" + cohort + ".toml"
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw fail("config", "no cohort '\(cohort)': cannot read \(file)")
        }
        do {
            return try CohortConfiguration.parse(text, file: file).limits
        } catch {
            throw fail("config", error.description)
        }
    }

    private func fail(_ kind: String, _ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("\(kind): \(message)\n".utf8))
        return ExitCode.failure
    }

    private func withBuffers<R>(
        _ method: [UInt8], _ path: [UInt8], _ query: [UInt8], _ body: [UInt8],
        _ headers: [(name: [UInt8], value: [UInt8])], _ body2: (LuaRequest) -> R
    ) -> R {
        // Copy everything into one stable allocation the request's views point into.
        var storage: [UInt8] = method + path + query + body
        for header in headers { storage += header.name + header.value }
        return storage.withUnsafeBytes { raw in
            var offset = 0
            func take(_ count: Int) -> UnsafeRawBufferPointer {
                defer { offset += count }
                return UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)])
            }
            let methodView = take(method.count)
            let pathView = take(path.count)
            let queryView = take(query.count)
            let bodyView = take(body.count)
            let luaHeaders = headers.map { header in LuaHeader(name: take(header.name.count), value: take(header.value.count)) }
            return luaHeaders.withUnsafeBufferPointer { headerView in
                body2(LuaRequest(method: methodView, path: pathView, query: queryView, headers: headerView, body: bodyView))
            }
        }
    }

    static func reason(_ status: Int) -> String {
        HTTPStatus.reasonPhrase(status)
    }
}
