import ArgumentParser
import BulkheadCore
import CBulkheadPosix
import Foundation
import Ingress

/// `bulkhead ingress`: the front door, started by the supervisor only (descriptor 3
/// is its listening socket; it follows `DATA/run/routes.json`). It runs no Lua.
struct IngressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingress",
        abstract: "Route requests by customer to their pool (started by the supervisor only).",
        shouldDisplay: false
    )

    @OptionGroup var dataOptions: DataOptions

    func run() throws {
        bh_close_from(4)
        let server: IngressServer
        do {
            server = try IngressServer(options: IngressOptions(data: DataDirectory(dataOptions.data)))
        } catch {
            FileHandle.standardError.write(Data("bulkhead ingress: \(error)\n".utf8))
            throw ExitCode.failure
        }
        throw ExitCode(server.run())
    }
}
