import BulkheadCore
import Testing

@Suite("Script split")
struct ScriptSplitTests {
    private func keys(_ count: Int) -> [[UInt8]] {
        (0..<count).map { Array("user-\($0)".utf8) }
    }

    @Test("a key's version is stable, and a growing share moves keys only from the active version to the candidate")
    func growingShareMovesKeysForwardOnly() {
        var onCandidate = Set<Int>()
        for percent in [0.0, 1, 10, 50, 100] {
            let split = ScriptSplit(deployment: 42, version: 2, percent: percent)
            var now = Set<Int>()
            for (index, key) in keys(5000).enumerated() where split.takesCandidate(key) {
                now.insert(index)
                #expect(split.takesCandidate(key))
            }
            #expect(onCandidate.isSubset(of: now), "no key goes back from the candidate at \(percent)%")
            onCandidate = now
        }
        #expect(onCandidate.count == 5000)
    }

    @Test("each share takes about its percentage of keys")
    func sharesAreProportional() {
        let all = keys(20_000)
        for percent in [1.0, 10, 50] {
            let split = ScriptSplit(deployment: 7, version: 2, percent: percent)
            let taken = Double(all.filter { split.takesCandidate($0) }.count) / Double(all.count) * 100
            #expect(abs(taken - percent) < max(0.5, percent * 0.1), "\(percent)% took \(taken)%")
        }
    }

    @Test("deployments pick their own first users")
    func deploymentsSaltTheHash() {
        let first = ScriptSplit(deployment: 1, version: 2, percent: 10)
        let second = ScriptSplit(deployment: 2, version: 2, percent: 10)
        let all = keys(2000)
        let a = Set(all.indices.filter { first.takesCandidate(all[$0]) })
        let b = Set(all.indices.filter { second.takesCandidate(all[$0]) })
        #expect(a != b)
    }

    @Test("the [deploy] table of a cohort file")
    func cohortDeployTable() throws {
        let text = """
            name = "free"
            order = 1
            port = 0
            workers = 2
            [deploy]
            strategy = "gradual"
            steps = [5, 25, 100]
            """
        let cohort = try CohortConfiguration.parse(text, file: "free.toml")
        #expect(cohort.deploy == ScriptDeployDefaults(strategy: .gradual, steps: [5, 25, 100]))
        #expect(try CohortConfiguration.parse(text.replacingOccurrences(of: "[deploy]\nstrategy = \"gradual\"\nsteps = [5, 25, 100]", with: ""), file: "free.toml").deploy == nil)
        #expect(throws: CohortConfigurationError.self) {
            _ = try CohortConfiguration.parse(text.replacingOccurrences(of: "[5, 25, 100]", with: "[5, 25]"), file: "free.toml")
        }
        #expect(throws: CohortConfigurationError.self) {
            _ = try CohortConfiguration.parse(text.replacingOccurrences(of: "\"gradual\"", with: "\"canary\""), file: "free.toml")
        }
    }
}
