import Foundation
import GRDB

// MARK: - CustomerStore

extension SQLiteStore {
    /// Adds a customer; the name and the token hash must both be free.
    public func addCustomer(name: String, cohort: String, tokenHash: String, actor: String) throws -> Customer {
        try checkName("customer", name)
        try checkName("cohort", cohort)
        try checkActor(actor)
        guard TokenHash.isWellFormed(tokenHash) else {
            throw StoreError.invalidArgument("a token hash must be 64 lower-case hex digits (TokenHash.of(token:))")
        }
        return try write("add customer \(name)") { db in
            guard try Self.fetchCustomer(db, named: name) == nil else { throw StoreError.customerExists(name) }
            let taken = try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM customers WHERE token_hash = ?)", arguments: [tokenHash]) ?? false
            guard !taken else { throw StoreError.tokenHashInUse }
            let customer = Customer(name: name, cohort: cohort, tokenHash: tokenHash, createdAt: now())
            try db.execute(
                sql: "INSERT INTO customers (name, cohort, token_hash, created_at) VALUES (?, ?, ?, ?)",
                arguments: [name, cohort, tokenHash, customer.createdAt])
            // The detail never holds the token hash: the audit log is shown to operators.
            try insertAudit(
                db, at: customer.createdAt, actor: actor, action: .customerAdded, subject: "customer/\(name)",
                detail: ["cohort": .string(cohort)])
            try recordChange(db, .customer(name), at: customer.createdAt)
            return customer
        }
    }

    /// The customer named `name`, or nil.
    public func customer(named name: String) throws -> Customer? {
        try checkName("customer", name)
        return try read("read customer \(name)") { db in try Self.fetchCustomer(db, named: name) }
    }

    /// Every customer, by name.
    public func customers() throws -> [Customer] {
        try read("list customers") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM customers ORDER BY name").map(Customer.init(row:))
        }
    }

    /// The customer whose token hashes to `tokenHash`, or nil.
    public func customer(withTokenHash tokenHash: String) throws -> Customer? {
        guard TokenHash.isWellFormed(tokenHash) else { return nil }
        let found = try read("look up a customer by token") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM customers WHERE token_hash = ?", arguments: [tokenHash])
                .map(Customer.init(row:))
        }
        // The index lookup's timing depends on the hash, which an attacker cannot steer
        // byte by byte through the token they send; the final compare is constant-time
        // anyway, so no backend's looser matching could admit a near miss.
        guard let found, constantTimeEquals(found.tokenHash, tokenHash) else { return nil }
        return found
    }

    /// Moves a customer to another cohort.
    public func moveCustomer(_ name: String, toCohort cohort: String, actor: String) throws -> Customer {
        try checkName("customer", name)
        try checkName("cohort", cohort)
        try checkActor(actor)
        return try write("move customer \(name) to cohort \(cohort)") { db in
            guard var customer = try Self.fetchCustomer(db, named: name) else { throw StoreError.customerNotFound(name) }
            let previous = customer.cohort
            customer.cohort = cohort
            try db.execute(sql: "UPDATE customers SET cohort = ? WHERE name = ?", arguments: [cohort, name])
            let at = now()
            try insertAudit(
                db, at: at, actor: actor, action: .customerMoved, subject: "customer/\(name)",
                detail: ["from": .string(previous), "to": .string(cohort)])
            try recordChange(db, .customer(name), at: at)
            return customer
        }
    }

    /// Replaces the customer's token hash; the old token stops working with this commit.
    public func rotateCustomerToken(name: String, tokenHash: String, actor: String) throws -> Customer {
        try checkName("customer", name)
        try checkActor(actor)
        guard TokenHash.isWellFormed(tokenHash) else {
            throw StoreError.invalidArgument("a token hash must be 64 lower-case hex digits (TokenHash.of(token:))")
        }
        return try write("rotate the token of customer \(name)") { db in
            guard var customer = try Self.fetchCustomer(db, named: name) else { throw StoreError.customerNotFound(name) }
            let taken = try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM customers WHERE token_hash = ?)", arguments: [tokenHash]) ?? false
            guard !taken else { throw StoreError.tokenHashInUse }
            customer.tokenHash = tokenHash
            try db.execute(sql: "UPDATE customers SET token_hash = ? WHERE name = ?", arguments: [tokenHash, name])
            // Neither the token nor a hash in the detail: the audit log is shown to
            // operators. No feed change: the data plane never sees tokens.
            try insertAudit(
                db, at: now(), actor: actor, action: .customerTokenRotated, subject: "customer/\(name)",
                detail: ["cohort": .string(customer.cohort)])
            return customer
        }
    }

    /// Removes the customer with its scripts, their versions and deployments; see
    /// ``CustomerStore/removeCustomer(name:actor:)``.
    public func removeCustomer(name: String, actor: String) throws {
        try checkName("customer", name)
        try checkActor(actor)
        try write("remove customer \(name)") { db in
            guard let customer = try Self.fetchCustomer(db, named: name) else { throw StoreError.customerNotFound(name) }
            let at = now()
            let live = try String.fetchAll(
                db, sql: "SELECT name FROM scripts WHERE customer = ? AND deleted = 0 ORDER BY name", arguments: [name])
            // What `abortDeployment` ends for a delete, for every script at once; the
            // records then go with the scripts, so the audit keeps their ids.
            let aborted = try Int.fetchAll(
                db, sql: "SELECT id FROM script_deployments WHERE customer = ? AND finished = 0 ORDER BY id", arguments: [name])
            // Children first: a deployment names its script, a version its script's id.
            // The scripts' own check of their active version is deferred to the commit,
            // when neither side is left.
            try db.execute(sql: "DELETE FROM script_deployments WHERE customer = ?", arguments: [name])
            try db.execute(
                sql: "DELETE FROM script_versions WHERE script_id IN (SELECT id FROM scripts WHERE customer = ?)",
                arguments: [name])
            try db.execute(sql: "DELETE FROM scripts WHERE customer = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM customers WHERE name = ?", arguments: [name])
            try insertAudit(
                db, at: at, actor: actor, action: .customerRemoved, subject: "customer/\(name)",
                detail: AuditDetail.customerRemoval(cohort: customer.cohort, scripts: live, aborted: aborted))
            // As a delete records each script; the customer's change tells hosts it is gone.
            for script in live {
                try recordChange(db, .script(customer: name, name: script), at: at)
            }
            try recordChange(db, .customer(name), at: at)
        }
    }

    static func fetchCustomer(_ db: Database, named name: String) throws -> Customer? {
        try Row.fetchOne(db, sql: "SELECT * FROM customers WHERE name = ?", arguments: [name]).map(Customer.init(row:))
    }

    static func requireCustomer(_ db: Database, _ name: String) throws {
        let exists = try Bool.fetchOne(
            db, sql: "SELECT EXISTS (SELECT 1 FROM customers WHERE name = ?)", arguments: [name]) ?? false
        guard exists else { throw StoreError.customerNotFound(name) }
    }
}

extension Customer {
    init(row: Row) throws {
        self.init(
            name: try row.decode(String.self, forColumn: "name"),
            cohort: try row.decode(String.self, forColumn: "cohort"),
            tokenHash: try row.decode(String.self, forColumn: "token_hash"),
            createdAt: try row.decode(Date.self, forColumn: "created_at"))
    }
}
