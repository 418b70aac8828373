/// A stored value that cannot become the Swift value it should be (an unknown
/// artifact kind, a cohort configuration that no longer decodes). The store turns it
/// into a ``StoreError`` naming the file; it never crashes on a row.
struct UnreadableValue: Error {
    /// What was being read, e.g. `the known good configuration of pool free`.
    var what: String
    /// What is wrong with it.
    var detail: String
}
