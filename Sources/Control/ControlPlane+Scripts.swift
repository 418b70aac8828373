#if canImport(Glibc)
import Glibc
#endif
import BulkheadCore
import Foundation
import Store

extension ControlPlane {
    /// The `hello` script every demo customer gets.
    public static let demoHello = """
        -- The demo script: answers with a greeting naming the pool's cohort.
        local count = 0
        function handle(req)
          count = count + 1
          return {
            status = 200,
            headers = { ["content-type"] = "text/plain" },
            body = "hello from " .. COHORT .. " (request " .. count .. " on this worker)\\n",
          }
        end
        """

    // MARK: - Demo and scripts directory

    /// `--demo`: `demo-COHORT` customers with a `hello` script; their tokens go to
    /// `DATA/demo-tokens` (0600). Existing demo customers are kept as they are.
    func seedDemo(cohorts: [String]) {
        var lines: [String] = []
        for cohort in cohorts {
            let customer = "demo-\(cohort)"
            do {
                if try store.customer(named: customer) == nil {
                    let token = TokenHash.newToken(prefix: TokenPrefix.customer)
                    _ = try store.addCustomer(name: customer, cohort: cohort, tokenHash: TokenHash.of(token: token), actor: "demo")
                    lines.append("\(customer) \(token)")
                }
                if try store.script(customer: customer, name: "hello") == nil {
                    let source = "COHORT = \"\(cohort)\"\n" + Self.demoHello
                    _ = try store.putScriptVersion(customer: customer, name: "hello", source: source, actor: "demo")
                }
            } catch {
                logger.error("cannot seed the demo customer", metadata: ["customer": "\(customer)", "error": "\(error)"])
            }
        }
        guard !lines.isEmpty else { return }
        let path = configuration.data.demoTokens
        do {
            // Appended, never through a link, only to a file of ours that nobody else
            // may read (checked at start too).
            let fd = try OwnedFile.openForAppending(path, mode: 0o600, secret: true)
            defer { close(fd) }
            try OwnedFile.write(Array((lines.joined(separator: "\n") + "\n").utf8), to: fd, path: path)
            logger.info("demo customers' tokens written", metadata: ["file": "\(path)"])
        } catch {
            logger.error("cannot write the demo customers' tokens", metadata: ["error": "\(error)"])
        }
    }

    /// The API changed the store for this script: if it lives in the scripts
    /// directory, the next poll compares its file with the store again.
    func forgetScriptFile(customer: String, name: String) {
        guard let directory = configuration.scriptsDirectory else { return }
        let path = ScriptsDirectory.path(directory, customer: customer, name: name)
        storedScriptFiles.withLock { $0.forget(path) }
    }

    /// Puts what changed in a scripts directory into the store. Returns whether
    /// anything changed. Safe to call off the queue (the store is thread-safe).
    @discardableResult
    func syncScriptsDirectory(_ directory: String) -> Bool {
        let stored = storedScriptFiles.withLock { files in
            files.forgotten = []
            return files.identities
        }
        let pollStarted = FileIdentity.now()
        let contents = ScriptsDirectory.read(directory, known: stored)
        // Files not read are as stored; a file read is recorded once its source is
        // in the store and its identity has settled (a failure, a customer not
        // added yet, or a file changed within the last second: read again).
        var nowStored = contents.identities.filter { stored[$0.key] == $0.value }
        func recordStored(_ path: String) {
            if let identity = contents.identities[path], identity.isSettled(at: pollStarted) {
                nowStored[path] = identity
            }
        }
        defer {
            storedScriptFiles.withLock { files in
                files.identities = nowStored.filter { !files.forgotten.contains($0.key) }
            }
        }
        var changed = false
        for problem in contents.problems where !reportedProblems.withLock({ $0.contains(problem) }) {
            reportedProblems.withLock { _ = $0.insert(problem) }
            logger.warning("\(problem)")
        }
        var customersAdded = true
        for (customer, cohort) in contents.assignments.sorted(by: { $0.key < $1.key }) {
            do {
                // The directory adds customers; moving one between cohorts is an
                // operator's `cohort move`, which warms the target pool first.
                if try store.customer(named: customer) == nil {
                    _ = try store.addCustomer(
                        name: customer, cohort: cohort, tokenHash: TokenHash.of(token: TokenHash.newToken(prefix: TokenPrefix.customer)),
                        actor: "scripts-dir")
                    changed = true
                }
            } catch {
                logger.warning("scripts directory: cannot add customer", metadata: ["customer": "\(customer)", "error": "\(error)"])
                customersAdded = false
            }
        }
        if customersAdded { recordStored(ScriptsDirectory.customersPath(directory)) }
        for (customer, scripts) in contents.sources.sorted(by: { $0.key < $1.key }) {
            guard (try? store.customer(named: customer)) != nil else { continue }
            for (name, source) in scripts.sorted(by: { $0.key < $1.key }) {
                let path = ScriptsDirectory.path(directory, customer: customer, name: name)
                let current = try? store.scriptSource(customer: customer, name: name, version: nil)
                guard current?.source != source else {
                    recordStored(path)
                    continue
                }
                do {
                    _ = try store.putScriptVersion(customer: customer, name: name, source: source, actor: "scripts-dir")
                    recordStored(path)
                    changed = true
                } catch {
                    // Tried again at every poll (a deployment of the script may be under
                    // way): said once for as long as it fails the same way.
                    let problem = "scripts directory: cannot store script \(customer)/\(name): \(error)"
                    if reportedProblems.withLock({ $0.insert(problem).inserted }) { logger.warning("\(problem)") }
                }
            }
        }
        return changed
    }
}
