import Foundation
import Store

// MARK: - CustomerStore

extension EtcdStore {
    /// Adds a customer; the name and the token hash must both be free.
    public func addCustomer(name: String, cohort: String, tokenHash: String, actor: String) throws -> Customer {
        try StoreArguments.checkName("customer", name)
        try StoreArguments.checkName("cohort", cohort)
        try StoreArguments.checkActor(actor)
        guard TokenHash.isWellFormed(tokenHash) else {
            throw StoreError.invalidArgument("a token hash must be 64 lower-case hex digits (TokenHash.of(token:))")
        }
        return try write("add customer \(name)") { attempt in
            let read = try await attempt.read([Keys.customer(name), Keys.token(tokenHash), Keys.auditNext])
            guard read[0] == nil else { throw StoreError.customerExists(name) }
            guard read[1] == nil else { throw StoreError.tokenHashInUse }
            let customer = Customer(name: name, cohort: cohort, tokenHash: tokenHash, createdAt: self.now())
            try attempt.put(Keys.customer(name), CustomerRecord(customer))
            try attempt.put(Keys.token(tokenHash), TokenRecord(customer: name))
            // The detail never holds the token hash: the audit log is shown to operators.
            _ = try await attempt.audit(
                at: customer.createdAt, actor: actor, action: .customerAdded, subject: "customer/\(name)",
                detail: ["cohort": .string(cohort)])
            return customer
        }
    }

    /// The customer named `name`, or nil.
    public func customer(named name: String) throws -> Customer? {
        try StoreArguments.checkName("customer", name)
        return try read("read customer \(name)") { reader in
            try await reader.value(Keys.customer(name), as: CustomerRecord.self)?.customer
        }
    }

    /// Every customer, by name.
    public func customers() throws -> [Customer] {
        try read("list customers") { reader in
            try await reader.list(Keys.customers).map { try self.decode(CustomerRecord.self, $0).customer }
                .sorted { $0.name < $1.name }
        }
    }

    /// The customer whose token hashes to `tokenHash`, or nil.
    public func customer(withTokenHash tokenHash: String) throws -> Customer? {
        guard TokenHash.isWellFormed(tokenHash) else { return nil }
        let found = try read("look up a customer by token") { reader -> Customer? in
            guard let token = try await reader.value(Keys.token(tokenHash), as: TokenRecord.self) else { return nil }
            return try await reader.value(Keys.customer(token.customer), as: CustomerRecord.self)?.customer
        }
        // The key lookup's timing depends on the hash, which an attacker cannot steer
        // byte by byte through the token they send; the final compare is constant-time.
        guard let found, constantTimeEquals(found.tokenHash, tokenHash) else { return nil }
        return found
    }

    /// Moves a customer to another cohort.
    public func moveCustomer(_ name: String, toCohort cohort: String, actor: String) throws -> Customer {
        try StoreArguments.checkName("customer", name)
        try StoreArguments.checkName("cohort", cohort)
        try StoreArguments.checkActor(actor)
        return try write("move customer \(name) to cohort \(cohort)") { attempt in
            try await attempt.read([Keys.customer(name), Keys.auditNext])
            guard var customer = try await attempt.value(Keys.customer(name), as: CustomerRecord.self)?.customer else {
                throw StoreError.customerNotFound(name)
            }
            let previous = customer.cohort
            customer.cohort = cohort
            try attempt.put(Keys.customer(name), CustomerRecord(customer))
            _ = try await attempt.audit(
                at: self.now(), actor: actor, action: .customerMoved, subject: "customer/\(name)",
                detail: ["from": .string(previous), "to": .string(cohort)])
            return customer
        }
    }
}
