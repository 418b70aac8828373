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
