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

    /// Replaces the customer's token hash (`customer/NAME` and its `token/HASH` key);
    /// the old token stops working with this write.
    public func rotateCustomerToken(name: String, tokenHash: String, actor: String) throws -> Customer {
        try StoreArguments.checkName("customer", name)
        try StoreArguments.checkActor(actor)
        guard TokenHash.isWellFormed(tokenHash) else {
            throw StoreError.invalidArgument("a token hash must be 64 lower-case hex digits (TokenHash.of(token:))")
        }
        return try write("rotate the token of customer \(name)") { attempt in
            let read = try await attempt.read([Keys.customer(name), Keys.token(tokenHash), Keys.auditNext])
            guard var customer = try await attempt.value(Keys.customer(name), as: CustomerRecord.self)?.customer else {
                throw StoreError.customerNotFound(name)
            }
            guard read[1] == nil else { throw StoreError.tokenHashInUse }
            let previous = customer.tokenHash
            customer.tokenHash = tokenHash
            // The old hash's key goes in the same transaction: no moment in which both
            // tokens find the customer.
            try attempt.delete(Keys.token(previous))
            try attempt.put(Keys.token(tokenHash), TokenRecord(customer: name))
            try attempt.put(Keys.customer(name), CustomerRecord(customer))
            // Neither the token nor a hash in the detail: the audit log is shown to operators.
            _ = try await attempt.audit(
                at: self.now(), actor: actor, action: .customerTokenRotated, subject: "customer/\(name)",
                detail: ["cohort": .string(customer.cohort)])
            return customer
        }
    }

    /// Removes the customer with its scripts, their versions and deployments; see
    /// ``CustomerStore/removeCustomer(name:actor:)``.
    ///
    /// The customer's keys under `script/`, `scriptversion/`, `deployment/running/`
    /// and `deployment/script/` go as one prefix delete each (the watch reports every
    /// key, so hosts see each script go); deployment records (`deployment/d/ID` and
    /// its state) one key each. Contents (`blob/…`) no version names any more are
    /// left to the housekeeping's collection. etcd caps the operations of a
    /// transaction (`--max-txn-ops`, 128 by default): a customer with more than about
    /// 55 deployments on record is refused whole by etcd, and nothing is removed.
    public func removeCustomer(name: String, actor: String) throws {
        try StoreArguments.checkName("customer", name)
        try StoreArguments.checkActor(actor)
        try write("remove customer \(name)") { attempt in
            try await attempt.read([Keys.customer(name), Keys.auditNext])
            guard let customer = try await attempt.value(Keys.customer(name), as: CustomerRecord.self)?.customer else {
                throw StoreError.customerNotFound(name)
            }
            // Listings are not conditions of the transaction; each head read is (its
            // compare), and the prefix deletes reach whatever is there at commit.
            let listing = Reader(store: self)
            let scripts = Keys.scripts(of: name)
            let names = try await listing.list(scripts).map { String($0.keyString.dropFirst(self.key(scripts).count)) }
            let heads = try await attempt.read(names.map { Keys.script(name, $0) })
            var live: [String] = []
            for (script, kv) in zip(names, heads) {
                guard let kv else { continue }
                let head = try self.decode(ScriptHead.self, kv)
                if !head.deleted { live.append(script) }
            }
            let running = try await listing.list(Keys.runningDeployments(of: name)).map { kv in
                try self.decode(RunningRecord.self, kv).id
            }
            let recorded = try await listing.list(Keys.scriptDeployments(of: name)).map { kv in
                try self.decode(RunningRecord.self, kv).id
            }
            for id in Set(recorded).union(running).sorted() {
                try attempt.delete(Keys.deployment(id))
                try attempt.delete(Keys.deploymentState(id))
            }
            try attempt.deletePrefix(Keys.runningDeployments(of: name))
            try attempt.deletePrefix(Keys.scriptDeployments(of: name))
            try attempt.deletePrefix(Keys.scriptVersions(of: name))
            try attempt.deletePrefix(Keys.scripts(of: name))
            try attempt.delete(Keys.token(customer.tokenHash))
            try attempt.delete(Keys.customer(name))
            _ = try await attempt.audit(
                at: self.now(), actor: actor, action: .customerRemoved, subject: "customer/\(name)",
                detail: AuditDetail.customerRemoval(cohort: customer.cohort, scripts: live.sorted(), aborted: running.sorted()))
        }
    }
}
