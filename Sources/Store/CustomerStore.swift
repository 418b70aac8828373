/// Customers, their cohorts and their API token hashes.
public protocol CustomerStore: Sendable {
    /// Adds a customer. `tokenHash` is ``TokenHash/of(token:)`` of its API token.
    ///
    /// Throws ``StoreError/Kind/conflict`` when the name (or the token hash) is taken.
    func addCustomer(name: String, cohort: String, tokenHash: String, actor: String) throws -> Customer

    /// The customer named `name`, or nil.
    func customer(named name: String) throws -> Customer?

    /// Every customer, by name.
    func customers() throws -> [Customer]

    /// The customer whose API token hashes to `tokenHash`, or nil.
    ///
    /// The final comparison is ``constantTimeEquals(_:_:)``; a malformed hash finds nobody.
    func customer(withTokenHash tokenHash: String) throws -> Customer?

    /// Moves a customer to another cohort and returns it as it now is.
    func moveCustomer(_ name: String, toCohort cohort: String, actor: String) throws -> Customer

    /// Replaces the customer's API token hash and returns the customer as it now is:
    /// the old token stops working with this write. Audited (`customer.rotate-token`,
    /// never with the token or its hash).
    ///
    /// Throws ``StoreError/Kind/notFound`` for an unknown customer and
    /// ``StoreError/Kind/conflict`` when another customer holds `tokenHash`.
    func rotateCustomerToken(name: String, tokenHash: String, actor: String) throws -> Customer

    /// Removes the customer and everything of its scripts, in one transaction: every
    /// script leaves the data plane as a deleted one does (the feed records each
    /// script and the customer), an unfinished deployment of any of them ends
    /// (aborted, its id in the audit detail), and the rows go entirely: the scripts,
    /// their versions and their deployments' records. A customer added later under the
    /// same name starts fresh (version 1, no deployments). Audited (`customer.remove`).
    ///
    /// Throws ``StoreError/Kind/notFound`` for an unknown customer.
    func removeCustomer(name: String, actor: String) throws
}
