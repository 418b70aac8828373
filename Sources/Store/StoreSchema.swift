import GRDB

/// What opening an SQLite file of bulkhead needs to know about its schema: the
/// control store and the host replica are opened, checked and migrated the same way.
protocol SQLiteSchema {
    /// `PRAGMA application_id` the first migration sets; a file without it is refused.
    static var applicationID: Int32 { get }
    /// Every migration, in order.
    static var migrator: DatabaseMigrator { get }
}

extension SQLiteSchema {
    /// The identifiers this build knows.
    static var knownMigrations: [String] { migrator.migrations }
}

/// The SQLite schema, as named migrations from the first version on.
///
/// Never edit a registered migration: a store created by an earlier build has it
/// applied already. Add a new one at the end; a store that knows migrations this
/// build does not is refused on open (it came from a newer bulkhead).
enum StoreSchema: SQLiteSchema {
    /// `PRAGMA application_id` of a bulkhead store ("BHST"), set by the first migration.
    /// An SQLite file without it is someone else's database, not ours to touch.
    static let applicationID: Int32 = 0x4248_5354

    /// Every migration, in order.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial") { db in try createInitialSchema(db) }
        migrator.registerMigration("v2-change-feed") { db in try createChangeFeed(db) }
        migrator.registerMigration("v3-script-deployments") { db in try createScriptDeployments(db) }
        return migrator
    }()

    /// Version 3: gradual deployments of customers' scripts. The split a deployment
    /// puts on its script lives in the script's row (what the data plane serves, read
    /// with the active version); the deployment's record in `script_deployments`.
    /// `split_deployment` is set exactly while the script has an unfinished deployment.
    private static func createScriptDeployments(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE scripts ADD COLUMN split_deployment INTEGER;
            ALTER TABLE scripts ADD COLUMN split_version INTEGER;
            ALTER TABLE scripts ADD COLUMN split_percent REAL
                CHECK (split_percent IS NULL OR (split_percent >= 0 AND split_percent <= 100));
            ALTER TABLE scripts ADD COLUMN split_key_header TEXT;

            -- AUTOINCREMENT: ids are shown to people and never reused (one numbering
            -- for every script).
            CREATE TABLE script_deployments (
                id            INTEGER PRIMARY KEY AUTOINCREMENT,
                customer      TEXT NOT NULL,
                name          TEXT NOT NULL,
                version       INTEGER NOT NULL CHECK (version >= 1),
                from_version  INTEGER NOT NULL CHECK (from_version >= 1),
                key_header    TEXT,
                percent       REAL NOT NULL CHECK (percent >= 0 AND percent <= 100),
                status        TEXT NOT NULL,
                finished      INTEGER NOT NULL DEFAULT 0 CHECK (finished IN (0, 1)),
                state         BLOB NOT NULL,
                created_at    TEXT NOT NULL,
                updated_at    TEXT NOT NULL,
                created_by    TEXT NOT NULL,
                FOREIGN KEY (customer, name) REFERENCES scripts(customer, name)
            ) STRICT;

            -- "One unfinished deployment per script", kept by SQLite itself.
            CREATE UNIQUE INDEX script_deployments_one_unfinished_per_script
                ON script_deployments(customer, name) WHERE finished = 0;
            CREATE INDEX script_deployments_by_script ON script_deployments(customer, name, id);
            """)
    }

    /// Version 2: the change feed. One row per change the data plane serves from,
    /// written in the transaction of the change; `revision` only grows (AUTOINCREMENT:
    /// never reused, even after pruning the newest). The key columns a kind does not
    /// use are NULL. Host agents follow it instead of re-reading the store.
    private static func createChangeFeed(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE changes (
                revision       INTEGER PRIMARY KEY AUTOINCREMENT,
                kind           TEXT NOT NULL,
                customer       TEXT,
                name           TEXT,
                artifact_kind  TEXT,
                pool           TEXT,
                rollout_id     INTEGER,
                setting        TEXT,
                at             TEXT NOT NULL
            ) STRICT;
            """)
    }

    /// Version 1. Tables are STRICT, so a value of the wrong type is refused by SQLite
    /// instead of being read back later as something else. Times are GRDB's text
    /// format (UTC, `YYYY-MM-DD HH:MM:SS.SSS`), readable with the sqlite3 shell.
    private static func createInitialSchema(_ db: Database) throws {
        try db.execute(sql: "PRAGMA application_id = \(applicationID)")
        try db.execute(sql: """
            CREATE TABLE customers (
                name        TEXT NOT NULL PRIMARY KEY,
                cohort      TEXT NOT NULL,
                token_hash  TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
                created_at  TEXT NOT NULL
            ) STRICT;

            -- One row per script name of a customer, deleted or not: deleting hides the
            -- row so that a later upload of the name continues its version numbers.
            -- The active version must exist; the check is deferred to the commit because
            -- a new script's row and its first version are inserted one after the other.
            CREATE TABLE scripts (
                id                 INTEGER PRIMARY KEY,
                customer           TEXT NOT NULL REFERENCES customers(name),
                name               TEXT NOT NULL,
                active_version     INTEGER NOT NULL CHECK (active_version >= 1),
                deleted            INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
                quarantined        INTEGER NOT NULL DEFAULT 0 CHECK (quarantined IN (0, 1)),
                quarantine_reason  TEXT,
                created_at         TEXT NOT NULL,
                updated_at         TEXT NOT NULL,
                UNIQUE (customer, name),
                FOREIGN KEY (id, active_version) REFERENCES script_versions(script_id, version)
                    DEFERRABLE INITIALLY DEFERRED
            ) STRICT;

            CREATE TABLE script_versions (
                script_id   INTEGER NOT NULL REFERENCES scripts(id),
                version     INTEGER NOT NULL CHECK (version >= 1),
                source      TEXT NOT NULL,
                sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
                size        INTEGER NOT NULL CHECK (size >= 0),
                created_at  TEXT NOT NULL,
                created_by  TEXT NOT NULL,
                PRIMARY KEY (script_id, version)
            ) STRICT;

            -- No CHECK on kind: the Swift enum validates it, and a new kind should not
            -- need SQLite's rebuild-the-table dance.
            CREATE TABLE artifacts (
                kind        TEXT NOT NULL,
                version     INTEGER NOT NULL CHECK (version >= 1),
                content     TEXT NOT NULL,
                sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
                size        INTEGER NOT NULL CHECK (size >= 0),
                created_at  TEXT NOT NULL,
                created_by  TEXT NOT NULL,
                PRIMARY KEY (kind, version)
            ) STRICT;

            -- AUTOINCREMENT: ids are shown to people and never reused.
            CREATE TABLE rollouts (
                id            INTEGER PRIMARY KEY AUTOINCREMENT,
                kind          TEXT NOT NULL,
                version       INTEGER NOT NULL,
                from_version  INTEGER NOT NULL CHECK (from_version >= 0),
                status        TEXT NOT NULL,
                finished      INTEGER NOT NULL DEFAULT 0 CHECK (finished IN (0, 1)),
                state         BLOB NOT NULL,
                created_at    TEXT NOT NULL,
                updated_at    TEXT NOT NULL,
                created_by    TEXT NOT NULL,
                FOREIGN KEY (kind, version) REFERENCES artifacts(kind, version)
            ) STRICT;

            -- "One rollout per artifact kind runs at a time", kept by SQLite itself.
            CREATE UNIQUE INDEX rollouts_one_unfinished_per_kind ON rollouts(kind) WHERE finished = 0;

            CREATE TABLE settings (
                key         TEXT NOT NULL PRIMARY KEY,
                value       TEXT NOT NULL,
                updated_at  TEXT NOT NULL
            ) STRICT;

            CREATE TABLE known_good_cohorts (
                pool           TEXT NOT NULL PRIMARY KEY,
                configuration  TEXT NOT NULL CHECK (json_valid(configuration)),
                saved_at       TEXT NOT NULL
            ) STRICT;

            -- AUTOINCREMENT: `events --follow` reads "after id N", so an id must never
            -- come back, even if the newest rows were somehow removed.
            CREATE TABLE audit (
                id       INTEGER PRIMARY KEY AUTOINCREMENT,
                at       TEXT NOT NULL,
                actor    TEXT NOT NULL,
                action   TEXT NOT NULL,
                subject  TEXT NOT NULL,
                detail   TEXT NOT NULL CHECK (json_valid(detail))
            ) STRICT;

            CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

            CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
            """)
    }
}
