import GRDB

/// The schema of the host replica (`DATA/host.sqlite`), as named migrations; the
/// rules of ``StoreSchema`` hold here too.
enum ReplicaSchema: SQLiteSchema {
    /// `PRAGMA application_id` of a host replica ("BHHR"): a control store is never
    /// opened as a replica, nor the other way round.
    static let applicationID: Int32 = 0x4248_4852

    /// Every migration, in order.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-replica") { db in try createInitialSchema(db) }
        migrator.registerMigration("v2-host-overrides") { db in try createHostOverrides(db) }
        migrator.registerMigration("v3-host-artifacts") { db in try createHostArtifacts(db) }
        migrator.registerMigration("v4-any-artifact-kind") { db in try openArtifactKinds(db) }
        migrator.registerMigration("v5-script-splits") { db in try createScriptSplits(db) }
        return migrator
    }()

    /// Version 1. What the data plane serves (customers, active scripts, the applied
    /// revision) and what only the host decides (quarantines, scale, last known good
    /// cohorts), with an append-only audit log of the host's own changes.
    private static func createInitialSchema(_ db: Database) throws {
        try db.execute(sql: "PRAGMA application_id = \(applicationID)")
        try db.execute(sql: """
            -- One row: the feed revision the rows below reflect, written in the same
            -- transaction as the rows it applied.
            CREATE TABLE feed_state (
                id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
                revision  INTEGER NOT NULL CHECK (revision >= 0),
                applied_at TEXT NOT NULL
            ) STRICT;

            CREATE TABLE customers (
                name    TEXT NOT NULL PRIMARY KEY,
                cohort  TEXT NOT NULL
            ) STRICT;

            CREATE TABLE scripts (
                customer  TEXT NOT NULL,
                name      TEXT NOT NULL,
                version   INTEGER NOT NULL CHECK (version >= 1),
                source    TEXT NOT NULL,
                sha256    TEXT NOT NULL,
                PRIMARY KEY (customer, name)
            ) STRICT;

            -- A quarantine holds the version that ended workers: another version
            -- arriving through the feed is new code and lifts it.
            CREATE TABLE quarantines (
                customer  TEXT NOT NULL,
                name      TEXT NOT NULL,
                version   INTEGER NOT NULL,
                reason    TEXT NOT NULL,
                at        TEXT NOT NULL,
                PRIMARY KEY (customer, name)
            ) STRICT;

            CREATE TABLE worker_counts (
                pool        TEXT NOT NULL PRIMARY KEY,
                workers     INTEGER NOT NULL CHECK (workers >= 0),
                updated_at  TEXT NOT NULL
            ) STRICT;

            CREATE TABLE known_good_cohorts (
                pool           TEXT NOT NULL PRIMARY KEY,
                configuration  TEXT NOT NULL CHECK (json_valid(configuration)),
                saved_at       TEXT NOT NULL
            ) STRICT;

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

    /// Version 2. Break glass as a host-local layer over the feed (the freeze, the
    /// pins), and the host's reports on each running rollout's stage (what the
    /// control plane's driver reads to judge it).
    private static func createHostOverrides(_ db: Database) throws {
        try db.execute(sql: """
            -- One row while rollouts are frozen on this host.
            CREATE TABLE freeze (
                id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
                actor  TEXT NOT NULL,
                at     TEXT NOT NULL
            ) STRICT;

            -- A kind pinned by break glass: every pool of this host runs `version`
            -- whatever the feed says, until unpinned here.
            CREATE TABLE pins (
                kind     TEXT NOT NULL PRIMARY KEY CHECK (kind IN ('runtime', 'rules', 'binary')),
                version  INTEGER NOT NULL CHECK (version >= 0),
                actor    TEXT NOT NULL,
                at       TEXT NOT NULL
            ) STRICT;

            -- The latest report on each running rollout's stage: its encoded
            -- `StageReport` (a Codable value of the Rollout module), replaced whole.
            CREATE TABLE stage_reports (
                rollout     INTEGER NOT NULL PRIMARY KEY,
                report      BLOB NOT NULL,
                written_at  TEXT NOT NULL
            ) STRICT;
            """)
    }

    /// Version 3. What the host's stage runner serves from without the control store:
    /// each pool's active artifact versions, the running rollouts (their encoded
    /// machines, as the feed copied them) and the content of every artifact version
    /// a slot can run. A host restarted while the control store is unreadable starts
    /// each slot on its version from these.
    private static func createHostArtifacts(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE active_artifacts (
                kind     TEXT NOT NULL CHECK (kind IN ('runtime', 'rules', 'binary')),
                pool     TEXT NOT NULL,
                version  INTEGER NOT NULL CHECK (version >= 0),
                PRIMARY KEY (kind, pool)
            ) STRICT;

            -- At most one running rollout per kind, as in the control store.
            CREATE TABLE running_rollouts (
                kind     TEXT NOT NULL PRIMARY KEY CHECK (kind IN ('runtime', 'rules', 'binary')),
                rollout  INTEGER NOT NULL,
                state    BLOB NOT NULL
            ) STRICT;

            CREATE TABLE artifacts (
                kind     TEXT NOT NULL CHECK (kind IN ('runtime', 'rules', 'binary')),
                version  INTEGER NOT NULL CHECK (version >= 1),
                content  TEXT NOT NULL,
                PRIMARY KEY (kind, version)
            ) STRICT;

            -- A replica written before these tables copies the control store whole
            -- once more: the feed after its revision would not bring back the active
            -- versions and rollouts set before it.
            DELETE FROM feed_state;
            """)
    }

    /// Version 5. Gradual deployments of scripts: each script's split as the feed
    /// copied it (the JSON of a `ScriptSplit`, the candidate's source included), so a
    /// host started while the control store is unreadable serves the same split; and
    /// the host's reports on each deployment it serves (what the control plane's
    /// driver reads to judge it).
    ///
    /// The feed revision is kept: a split exists only in a control store written by a
    /// build that knows deployments, and every step of a deployment changes its script
    /// in the feed, so a replica upgraded behind such a store takes the split at the
    /// next step. Forcing a full copy instead would leave a host upgraded while its
    /// control store is unreadable with nothing to start from.
    private static func createScriptSplits(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE scripts ADD COLUMN split BLOB;

            -- The latest report on each deployment the host serves: its encoded report
            -- (a Codable value of the deployment engine), replaced whole.
            CREATE TABLE deployment_reports (
                deployment  INTEGER NOT NULL PRIMARY KEY,
                report      BLOB NOT NULL,
                written_at  TEXT NOT NULL
            ) STRICT;
            """)
    }

    /// Version 4. The tables of version 2 and 3 checked `kind` against the three
    /// kinds of their time, so a fourth (the cohort policy) could not be stored. They
    /// are rebuilt without the check, as the control store's never had one: the
    /// Swift enum validates a kind, and a new kind needs no table rebuild.
    private static func openArtifactKinds(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE pins_v4 (
                kind     TEXT NOT NULL PRIMARY KEY,
                version  INTEGER NOT NULL CHECK (version >= 0),
                actor    TEXT NOT NULL,
                at       TEXT NOT NULL
            ) STRICT;
            INSERT INTO pins_v4 (kind, version, actor, at) SELECT kind, version, actor, at FROM pins;
            DROP TABLE pins;
            ALTER TABLE pins_v4 RENAME TO pins;

            CREATE TABLE active_artifacts_v4 (
                kind     TEXT NOT NULL,
                pool     TEXT NOT NULL,
                version  INTEGER NOT NULL CHECK (version >= 0),
                PRIMARY KEY (kind, pool)
            ) STRICT;
            INSERT INTO active_artifacts_v4 (kind, pool, version) SELECT kind, pool, version FROM active_artifacts;
            DROP TABLE active_artifacts;
            ALTER TABLE active_artifacts_v4 RENAME TO active_artifacts;

            CREATE TABLE running_rollouts_v4 (
                kind     TEXT NOT NULL PRIMARY KEY,
                rollout  INTEGER NOT NULL,
                state    BLOB NOT NULL
            ) STRICT;
            INSERT INTO running_rollouts_v4 (kind, rollout, state) SELECT kind, rollout, state FROM running_rollouts;
            DROP TABLE running_rollouts;
            ALTER TABLE running_rollouts_v4 RENAME TO running_rollouts;

            CREATE TABLE artifacts_v4 (
                kind     TEXT NOT NULL,
                version  INTEGER NOT NULL CHECK (version >= 1),
                content  TEXT NOT NULL,
                PRIMARY KEY (kind, version)
            ) STRICT;
            INSERT INTO artifacts_v4 (kind, version, content) SELECT kind, version, content FROM artifacts;
            DROP TABLE artifacts;
            ALTER TABLE artifacts_v4 RENAME TO artifacts;
            """)
    }
}
