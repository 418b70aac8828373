import BulkheadCore

extension BulkheadStore {
    /// The cohort policy `pool` runs outside any rollout: that of its active policy
    /// version, or nil for version 0 (the cohort file's own). A stored policy was
    /// checked before it was stored; one that no longer parses throws, naming it.
    public func activePolicy(ofPool pool: String) throws -> CohortPolicy? {
        guard let version = try activeVersion(of: .policy, inPool: pool), version > 0 else { return nil }
        guard let artifact = try artifact(kind: .policy, version: version) else {
            throw StoreError.artifactNotFound(.policy, version)
        }
        do {
            return try CohortPolicy.parse(artifact.content)
        } catch {
            throw StoreError.unreadable(path: "policy version \(version)", what: "cohort policy", detail: "\(error)")
        }
    }

    /// `cohorts` under the policies the store says each runs (`activePolicy`); a
    /// cohort whose policy cannot be read keeps its file's and is named in `problems`.
    public func underActivePolicies(_ cohorts: [CohortConfiguration]) -> (cohorts: [CohortConfiguration], problems: [String]) {
        var problems: [String] = []
        let applied = cohorts.map { cohort in
            do {
                return try activePolicy(ofPool: cohort.name)?.applied(to: cohort) ?? cohort
            } catch {
                problems.append("\(cohort.name): \(error)")
                return cohort
            }
        }
        return (applied, problems)
    }
}
