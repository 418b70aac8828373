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
}
