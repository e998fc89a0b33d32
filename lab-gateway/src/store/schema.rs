//! lab.db's schema, as numbered migrations (rusqlite_migration, which keeps
//! the number in SQLite's `user_version`).
//!
//! Why migrations: a gateway of a newer release opens the database of an
//! older one, and one of an older release must refuse a newer database
//! rather than misread it (`to_latest` fails when `user_version` is beyond
//! the last migration). Append a migration to change the schema; never edit
//! one that has shipped.
//!
//! Migration 1 is the schema as it stood before versions were recorded,
//! written idempotently: a database made by those releases has
//! `user_version` 0 and its tables already, maybe without the columns added
//! later (`kernels.resources`), and migration 1 brings it to the same state
//! as a new database, keeping its rows.

use rusqlite::Connection;
use rusqlite_migration::{HookResult, M, Migrations};

/// Every table as of the first versioned release.
const V1: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    grp TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    sha256 TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT
);
CREATE TABLE IF NOT EXISTS kernels (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    spec TEXT NOT NULL,
    connection TEXT NOT NULL,
    locator TEXT NOT NULL,
    created TEXT NOT NULL,
    -- The admission grant, as JSON (empty for none).
    resources TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    kernel_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    grp TEXT NOT NULL,
    spec TEXT NOT NULL,
    model TEXT,
    gpus INTEGER NOT NULL,
    cpus REAL NOT NULL,
    started INTEGER NOT NULL,
    ended INTEGER
);
CREATE INDEX IF NOT EXISTS usage_started ON usage(started);
CREATE TABLE IF NOT EXISTS queued (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    request TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS login_codes (
    sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    kernel_id TEXT NOT NULL
);
-- Who may change a course: its owner (who first published to it) and the
-- co-trainers the owner names. Courses published before owners were
-- recorded have no row: only admins change them until one names an owner.
CREATE TABLE IF NOT EXISTS course_owners (
    course TEXT PRIMARY KEY,
    owner TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS course_trainers (
    course TEXT NOT NULL,
    user_name TEXT NOT NULL,
    PRIMARY KEY (course, user_name)
);
";

/// A database of the first release has `kernels` without `resources`
/// (SQLite has no `ADD COLUMN IF NOT EXISTS`, so it is looked for).
fn v1_add_missing_columns(tx: &rusqlite::Transaction) -> HookResult {
    let has_resources: i64 = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('kernels') WHERE name = 'resources'",
        [],
        |r| r.get(0),
    )?;
    if has_resources == 0 {
        tx.execute_batch("ALTER TABLE kernels ADD COLUMN resources TEXT NOT NULL DEFAULT ''")?;
    }
    Ok(())
}

/// Graded exercises (issue 15): assignments of a course, each engineer's
/// extension, immutable submissions, and their gradings (a regrade adds a
/// row beside the old one, never over it). Idempotent, as migration 1 is:
/// a database whose `user_version` was lost is migrated again whole.
const V2: &str = "
CREATE TABLE IF NOT EXISTS assignments (
    course TEXT NOT NULL,
    name TEXT NOT NULL,
    -- classroom::Policy as JSON: dates, late penalty, which submission
    -- counts, when hidden results show, limits.
    policy TEXT NOT NULL,
    max_score REAL NOT NULL,
    -- NULL while only the course's staff see it.
    released TEXT,
    -- When the staff published grades (hidden results then show).
    published TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (course, name)
);
CREATE TABLE IF NOT EXISTS extensions (
    course TEXT NOT NULL,
    assignment TEXT NOT NULL,
    user_name TEXT NOT NULL,
    seconds INTEGER NOT NULL,
    PRIMARY KEY (course, assignment, user_name),
    FOREIGN KEY (course, assignment) REFERENCES assignments(course, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS submissions (
    -- Random, so one cannot be guessed from another.
    id TEXT PRIMARY KEY,
    course TEXT NOT NULL,
    assignment TEXT NOT NULL,
    user_name TEXT NOT NULL,
    -- The server's clock, never the client's.
    submitted TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    FOREIGN KEY (course, assignment) REFERENCES assignments(course, name) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS submissions_by_user ON submissions(course, assignment, user_name, submitted);
CREATE TABLE IF NOT EXISTS gradings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    submission TEXT NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    -- The fair queue serves courses in turn.
    course TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'grading', 'graded', 'failed')),
    reason TEXT,
    -- Bumped each time a grader takes it; a result is recorded only by the
    -- attempt that holds it, so nothing is graded twice.
    attempts INTEGER NOT NULL DEFAULT 0,
    queued TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    -- classroom::CellScore list as JSON, and the rebuild's notes.
    scores TEXT,
    notes TEXT,
    score REAL,
    max_score REAL
);
CREATE INDEX IF NOT EXISTS gradings_queue ON gradings(state, id);
CREATE INDEX IF NOT EXISTS gradings_by_submission ON gradings(submission, id);
CREATE TABLE IF NOT EXISTS manual_grades (
    submission TEXT NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    grade_id TEXT NOT NULL,
    points REAL NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    grader TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (submission, grade_id)
);
";

/// Competitions (issue 16): a competition's rules, its teams and members,
/// and every submission with its state and both scores. Which scores a
/// participant may see is the routes' decision (`classroom::competition`'s
/// `Rules::private_visible`); the private score is stored from the start.
/// Idempotent, as the others.
const V3: &str = "
CREATE TABLE IF NOT EXISTS competitions (
    slug TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    -- Markdown, shown to participants.
    overview TEXT NOT NULL,
    rules_text TEXT NOT NULL,
    -- classroom::competition::Rules as JSON: metric, dates, caps, teams.
    rules TEXT NOT NULL,
    created_by TEXT NOT NULL,
    -- The solution file's SHA-256, once staff uploaded one.
    solution TEXT,
    -- NULL while only staff see it.
    published TEXT,
    -- When staff revealed the private board (Reveal::ByStaff).
    revealed TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS competition_teams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    competition TEXT NOT NULL REFERENCES competitions(slug) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (competition, name)
);
CREATE TABLE IF NOT EXISTS competition_members (
    competition TEXT NOT NULL REFERENCES competitions(slug) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    team INTEGER NOT NULL REFERENCES competition_teams(id) ON DELETE CASCADE,
    joined TEXT NOT NULL,
    PRIMARY KEY (competition, user_name)
);
CREATE INDEX IF NOT EXISTS competition_members_by_team ON competition_members(team);
CREATE TABLE IF NOT EXISTS competition_submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    competition TEXT NOT NULL REFERENCES competitions(slug) ON DELETE CASCADE,
    team INTEGER NOT NULL REFERENCES competition_teams(id),
    user_name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- The file as received, kept for rescoring: DATA/competitions/SLUG/submissions/FILE
    -- ('' for a refused file, which is not kept).
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    -- The server's clock; day is its UTC date, what the daily cap counts.
    submitted TEXT NOT NULL,
    day TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('scored', 'rejected', 'failed')),
    -- 1 when it counts against the caps: scored (a refused file or the
    -- platform's failure costs nothing).
    counted INTEGER NOT NULL,
    public_score REAL,
    private_score REAL,
    -- What was wrong (a rejection's problems as JSON, or a message).
    error TEXT,
    selected INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS competition_submissions_by_team ON competition_submissions(competition, team, day);
-- A team's request to merge another into it; the other team accepts or not.
CREATE TABLE IF NOT EXISTS competition_invitations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    competition TEXT NOT NULL REFERENCES competitions(slug) ON DELETE CASCADE,
    from_team INTEGER NOT NULL REFERENCES competition_teams(id) ON DELETE CASCADE,
    to_team INTEGER NOT NULL REFERENCES competition_teams(id) ON DELETE CASCADE,
    by_user TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (from_team, to_team)
);
CREATE INDEX IF NOT EXISTS competition_submissions_scored ON competition_submissions(competition, state);
";

/// Code submissions (issue 16): a submission is a prediction file or a
/// notebook the platform runs; a notebook's row is queued, then running
/// (with its attempt and deadline) until it ends. SQLite cannot change a
/// CHECK, so the table is rebuilt; nothing references it.
const V4: &str = "
CREATE TABLE competition_submissions_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    competition TEXT NOT NULL REFERENCES competitions(slug) ON DELETE CASCADE,
    team INTEGER NOT NULL REFERENCES competition_teams(id),
    user_name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- 'csv': a prediction file, scored at once; 'code': a notebook, run offline first.
    kind TEXT NOT NULL DEFAULT 'csv' CHECK (kind IN ('csv', 'code')),
    -- The file as received, kept for rescoring: DATA/competitions/SLUG/submissions/FILE
    -- ('' for a refused file, which is not kept).
    file TEXT NOT NULL,
    -- A notebook's folder in its submitter's, where its kernel starts.
    folder TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL,
    -- The server's clock; day is its UTC date, what the daily cap counts.
    submitted TEXT NOT NULL,
    day TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'scored', 'rejected', 'failed')),
    -- 1 when it counts against the caps: scored, queued or running, or a
    -- notebook's own failure (a refused file or the platform's failure costs nothing).
    counted INTEGER NOT NULL,
    public_score REAL,
    private_score REAL,
    -- What was wrong (JSON: a message, and problems, a category or a traceback).
    error TEXT,
    selected INTEGER NOT NULL DEFAULT 0,
    -- A notebook's runs so far, when the running one must end, and the
    -- finished run's time as shown (whole minutes).
    attempts INTEGER NOT NULL DEFAULT 0,
    deadline TEXT,
    runtime_min INTEGER
);
INSERT INTO competition_submissions_v4 (id, competition, team, user_name, description, file,
    sha256, submitted, day, state, counted, public_score, private_score, error, selected)
SELECT id, competition, team, user_name, description, file, sha256, submitted, day, state,
    counted, public_score, private_score, error, selected FROM competition_submissions;
-- Ids are never reused: the new table's AUTOINCREMENT counter starts where the old one was.
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'competition_submissions_v4', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'competition_submissions_v4');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE(
    (SELECT seq FROM sqlite_sequence WHERE name = 'competition_submissions'), 0))
    WHERE name = 'competition_submissions_v4';
DROP TABLE competition_submissions;
ALTER TABLE competition_submissions_v4 RENAME TO competition_submissions;
CREATE INDEX competition_submissions_by_team ON competition_submissions(competition, team, day);
CREATE INDEX competition_submissions_scored ON competition_submissions(competition, state);
CREATE INDEX competition_submissions_waiting ON competition_submissions(state)
    WHERE state IN ('queued', 'running');
";

/// Sign-in for the academy (issue 17): users' e-mail and when they were
/// deactivated (none: active; their rows stay, only signing in and acting
/// stop); tokens' kind, expiry, idle timeout and last use.
const V5: &str = "
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN deactivated TEXT;
-- A token is an API token (`api`: the CLI's, personal ones made in the UI)
-- or a browser session (`session`, made by signing in). `expires` ends it
-- (unix seconds; none: never); a session also ends `idle_s` after its
-- `last_used` (unix seconds, kept to the minute for API tokens).
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
ALTER TABLE tokens ADD COLUMN expires INTEGER;
ALTER TABLE tokens ADD COLUMN idle_s INTEGER;
ALTER TABLE tokens ADD COLUMN last_used INTEGER;
UPDATE tokens SET kind = 'session' WHERE label = 'browser';
CREATE INDEX tokens_by_user ON tokens(user_name, last_used);
CREATE INDEX usage_by_user ON usage(user_name, started);
-- Who signed in through an OpenID provider: its subject, for good tied to
-- one user here (the name claim may change; the subject does not).
CREATE TABLE identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    linked TEXT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_by_user ON identities(user_name);
";

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up_with_hook(V1, v1_add_missing_columns)
            .comment("the schema before versions, idempotent"),
        M::up(V2).comment("assignments, submissions and gradings"),
        M::up(V3).comment("competitions, teams and their submissions"),
        M::up(V4).comment("code submissions: queued and running notebooks"),
        M::up(V5).comment("users' e-mail and deactivation; tokens' kind, expiry and last use"),
    ])
}

/// Brings `conn` to the newest schema. Connection settings (WAL, foreign
/// keys) are set first: SQLite ignores them inside a transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), rusqlite_migration::Error> {
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| rusqlite_migration::Error::with_sql(e, "PRAGMA journal_mode"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| rusqlite_migration::Error::with_sql(e, "PRAGMA foreign_keys"))?;
    migrations().to_latest(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    /// The statements of the releases before versions, as they created
    /// lab.db (the first one had no `kernels.resources`).
    const UNVERSIONED: &str = "
        CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, grp TEXT, created TEXT NOT NULL);
        CREATE TABLE tokens (id TEXT PRIMARY KEY, user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            sha256 TEXT NOT NULL UNIQUE, label TEXT NOT NULL, created TEXT NOT NULL, revoked TEXT);
        CREATE TABLE kernels (id TEXT PRIMARY KEY, owner TEXT NOT NULL, spec TEXT NOT NULL,
            connection TEXT NOT NULL, locator TEXT NOT NULL, created TEXT NOT NULL);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL);
        CREATE TABLE queued (id TEXT PRIMARY KEY, owner TEXT NOT NULL, request TEXT NOT NULL, seq INTEGER NOT NULL);
        INSERT INTO users VALUES ('alice', 'trainer', 'cohort-1', '2026-01-01T00:00:00.000000Z');
        INSERT INTO tokens VALUES ('t1', 'alice', 'abc', 'cli', '2026-01-01T00:00:00.000000Z', NULL);
        INSERT INTO kernels VALUES ('00000000-0000-0000-0000-000000000001', 'alice', 'python3',
            '{}', '{}', '2026-01-01T00:00:00.000000Z');
        INSERT INTO settings VALUES ('quotas', '{}', 3);
    ";

    fn columns(c: &Connection, table: &str) -> Vec<String> {
        let mut stmt = c
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn an_unversioned_database_migrates_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(UNVERSIONED)
            .unwrap();
        let mut old = Connection::open(&path).unwrap();
        migrate(&mut old).unwrap();
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        for table in [
            "users",
            "tokens",
            "kernels",
            "usage",
            "login_codes",
            "course_owners",
        ] {
            assert_eq!(columns(&old, table), columns(&fresh, table), "{table}");
        }
        let version: i64 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 5);
        let (role, resources): (String, String) = old
            .query_row(
                "SELECT u.role, k.resources FROM users u JOIN kernels k ON k.owner = u.name",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((role.as_str(), resources.as_str()), ("trainer", ""));
        let settings: i64 = old
            .query_row(
                "SELECT version FROM settings WHERE key = 'quotas'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(settings, 3);
        // Opening again is a no-op.
        migrate(&mut old).unwrap();
    }

    #[test]
    fn v4_keeps_the_competition_submissions_of_v3() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrations().to_version(&mut c, 3).unwrap();
        c.execute_batch(
            "INSERT INTO competitions VALUES ('c', 'C', '', '', '{}', 'ann', NULL, NULL, NULL, 'x', 'x');
             INSERT INTO competition_teams (competition, name, created) VALUES ('c', 'ann', 'x');
             INSERT INTO competition_submissions (competition, team, user_name, description, file, sha256,
                 submitted, day, state, counted, public_score, private_score, error, selected)
             VALUES ('c', 1, 'ann', 'first', 'f.csv', 'abc', 't', '2026-12-01', 'scored', 1, 0.5, 0.25, NULL, 1);
             INSERT INTO competition_submissions (competition, team, user_name, description, file, sha256,
                 submitted, day, state, counted, public_score, private_score, error, selected)
             VALUES ('c', 1, 'ann', 'gone', '', 'abc', 't', '2026-12-01', 'rejected', 0, NULL, NULL, NULL, 0);
             DELETE FROM competition_submissions WHERE id = 2;",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let (kind, state, public, selected, counted): (String, String, f64, i64, i64) = c
            .query_row(
                "SELECT kind, state, public_score, selected, counted FROM competition_submissions WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (kind.as_str(), state.as_str(), public, selected, counted),
            ("csv", "scored", 0.5, 1, 1)
        );
        c.execute(
            "INSERT INTO competition_submissions (competition, team, user_name, description, file, sha256,
                 submitted, day, state, counted, kind) VALUES ('c', 1, 'ann', '', 'n.ipynb', '', 't', 'd', 'queued', 1, 'code')",
            [],
        )
        .unwrap();
        // Id 2 was used (and deleted) before the migration: never again.
        assert_eq!(c.last_insert_rowid(), 3);
    }

    #[test]
    fn a_database_from_a_newer_release_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(migrate(&mut c).is_err());
    }
}
