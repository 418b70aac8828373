import Foundation
import TOMLKit

/// A scripts directory's `customers.toml`: each customer's cohort, one TOML key per
/// customer (`acme = "pro"`, or a quoted key, `"acme" = "pro"`).
///
/// Read with the TOML reader the cohort files use, so what is valid TOML reads the
/// same here as anywhere else: a hand-split reader refused a quoted key and took
/// `acme = pro`, which is not TOML.
public struct CustomersFile: Sendable, Equatable {
    /// Customer → cohort, for every entry that is well formed.
    public var assignments: [String: String]
    /// The entries refused (a bad name, a value that is not a cohort name), one each.
    /// The file's other entries still count, as they did with the line reader.
    public var problems: [CustomersFileError]

    /// Creates a map from its parts.
    public init(assignments: [String: String] = [:], problems: [CustomersFileError] = []) {
        self.assignments = assignments
        self.problems = problems
    }

    /// Parses the file's text. Throws when the text is not TOML at all: then no
    /// entry of it can be trusted, and the caller keeps the assignments it had.
    ///
    /// - Parameters:
    ///   - text: the TOML source.
    ///   - file: the path, used in messages.
    public static func parse(_ text: String, file: String) throws(CustomersFileError) -> CustomersFile {
        // The TOML reader takes a C string: it would stop at a NUL and read a file
        // cut there (a zero-filled tail after a crash) as if it were whole.
        if let nul = text.utf8.firstIndex(of: 0) {
            let line = text.utf8[..<nul].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            throw CustomersFileError(
                file: file, line: line, key: nil, problem: "holds a NUL byte: not valid TOML (is the file damaged?)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw CustomersFileError(
                file: file, line: error.source.begin.line, key: nil,
                problem: "not valid TOML at column \(error.source.begin.column): \(error.description); "
                    + "expected CUSTOMER = \"COHORT\"")
        } catch {
            throw CustomersFileError(file: file, line: nil, key: nil, problem: "not valid TOML: \(error)")
        }
        var result = CustomersFile()
        // The reader keeps no line per value, so an entry's error names its key.
        for key in table.keys.sorted() {
            guard ResourceName.isValid(key) else {
                result.problems.append(CustomersFileError(
                    file: file, line: nil, key: key, problem: "'\(key)' is not a valid customer name (\(ResourceName.rule))"))
                continue
            }
            guard let value = table[key], let cohort = value.string else {
                let type = table[key].map { "\($0.type)" } ?? "nothing"
                result.problems.append(CustomersFileError(
                    file: file, line: nil, key: key, problem: "must be a cohort name in quotes (\"COHORT\"), got \(type)"))
                continue
            }
            guard ResourceName.isValid(cohort) else {
                result.problems.append(CustomersFileError(
                    file: file, line: nil, key: key, problem: "'\(cohort)' is not a valid cohort name (\(ResourceName.rule))"))
                continue
            }
            result.assignments[key] = cohort
        }
        return result
    }
}

/// A `customers.toml`, or one entry of it, that cannot be used: names the file, the
/// line when the TOML reader gives one, the key, and the problem.
public struct CustomersFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file, as given (e.g. `scripts/customers.toml`).
    public var file: String
    /// The line at fault, 1-based, when known (TOML syntax errors).
    public var line: Int?
    /// The customer key at fault, or nil for the file as a whole.
    public var key: String?
    /// What is wrong, and what would be right.
    public var problem: String

    /// Creates an error.
    public init(file: String, line: Int?, key: String?, problem: String) {
        self.file = file
        self.line = line
        self.key = key
        self.problem = problem
    }

    /// One line for a person: `scripts/customers.toml:3: not valid TOML …` or
    /// `scripts/customers.toml: Acme: 'Acme' is not a valid customer name …`.
    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let key { text += ": \(key)" }
        return text + ": " + problem
    }
}
