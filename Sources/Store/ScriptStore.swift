/// Customers' scripts: every version kept, one active version per script.
///
/// All methods but ``activeScripts()`` and ``allScripts()`` take the customer and see
/// only that customer's scripts. A deleted script is hidden from all of them until a
/// new version is uploaded under the same name; its numbering continues.
public protocol ScriptStore: Sendable {
    /// Stores `source` as the script's next version (1 for a new script) and makes it
    /// active. Undeletes a deleted script and lifts a quarantine: new code gets a new chance.
    ///
    /// The version and its audit event are one transaction. Throws
    /// ``StoreError/Kind/conflict`` while the script has an unfinished deployment
    /// (see ``DeploymentStore``).
    func putScriptVersion(customer: String, name: String, source: String, actor: String) throws -> ScriptVersion

    /// The customer's scripts, by name (none for an unknown customer).
    func scripts(ofCustomer customer: String) throws -> [ScriptSummary]

    /// One script of the customer, or nil.
    func script(customer: String, name: String) throws -> ScriptSummary?

    /// Every version of a script, oldest first. Throws ``StoreError/Kind/notFound`` for an unknown script.
    func scriptVersions(customer: String, name: String) throws -> [ScriptVersion]

    /// The source of one version, or of the active version when `version` is nil.
    func scriptSource(customer: String, name: String, version: Int?) throws -> ScriptSource

    /// Sets the active version back to the one before it, or to `version` when given.
    ///
    /// Records an audit event, not a new version. A change of the active version lifts
    /// a quarantine, as an upload does. Ends the script's unfinished deployment
    /// (aborted). Throws ``StoreError/Kind/conflict`` when the active version is 1 and
    /// no version is given.
    func rollbackScript(customer: String, name: String, to version: Int?, actor: String) throws -> ScriptSummary

    /// Hides the script, ending its unfinished deployment (aborted); its versions are
    /// kept and a later upload continues their numbering.
    func deleteScript(customer: String, name: String, actor: String) throws

    /// Quarantines the script (workers stop running it) or releases it.
    func setScriptQuarantined(
        customer: String, name: String, quarantined: Bool, reason: String?, actor: String
    ) throws -> ScriptSummary

    /// Every customer's scripts, by customer then name: the operators' listing.
    func allScripts() throws -> [ScriptSummary]

    /// The active version of every script not deleted, with its owner's cohort, by
    /// customer then name: what the workers load.
    func activeScripts() throws -> [ActiveScript]
}
