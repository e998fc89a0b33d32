//! The gateway's SQLite database: users, API tokens, and kernels.
//!
//! Tokens are stored as SHA-256 hashes: a token is 32 random bytes, so a fast
//! hash is as safe as a slow one and lookups stay O(1). The plain token is
//! shown once, when it is created, and never written anywhere.
//! Kernels are recorded so that a restarted gateway re-attaches to them.
//! Their connections hold HMAC keys, so they are sealed (ChaCha20-Poly1305)
//! with a key kept apart in `kernel-keys.secret` (mode 0600) beside the
//! database: a copy of `lab.db` gives no kernel's key. (A kernel that can
//! read the data dir, under `--sandbox off`, can read both files.)
//!
//! One file per job: `schema` (migrations), `users`, `tokens` (and login
//! codes), `kernels` (kernels, sessions, queued starts), `sealing`,
//! `people` (enrolment in bulk, deactivation), `ledger` (usage), `settings`, `courses`, `classroom` (assignments,
//! submissions, gradings), `competitions` (competitions, teams, entries), `teams` (invitations,
//! merges). This module holds the
//! connection and the error type, and no SQL of its own but a ping.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

mod classroom;
mod code_runs;
mod competitions;
mod courses;
mod identities;
mod kernels;
mod ledger;
mod people;
mod rescoring;
mod schema;
mod sealing;
mod settings;
mod teams;
mod tokens;
mod users;

pub use classroom::{
    AssignmentRow, GradingOutcome, GradingRow, GradingState, ManualGrade, SubmissionRow,
};
pub use code_runs::RunEnd;
pub use competitions::{
    CompetitionMark, CompetitionRow, EntryCounts, EntryKind, EntryRow, EntryState, SelectError,
    TeamRow,
};
pub use courses::CourseStaff;
pub use identities::{SignIn, SignInRefused};
pub use kernels::{KernelRow, QueuedRow, SessionRow};
pub use ledger::UsageRow;
pub use people::{Account, Enrolment, FieldChange, PeoplePage, Person, PersonRow};
pub use rescoring::Rescored;
pub use teams::{InvitationRow, LeaveRefused, MergeCounts};
pub use tokens::{TokenInfo, TokenKind, hash_token};
pub use users::{Role, UnknownRole, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database schema: {0}")]
    Schema(#[from] rusqlite_migration::Error),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    NoUser(String),
    #[error("user {0:?} is deactivated")]
    Deactivated(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("the database lock was poisoned")]
    Poisoned,
    #[error("the kernel key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Bumped by every write that can change a competition's boards
    /// (submissions, their states and selections, teams), so what is built
    /// from them can be kept until it changes.
    boards: Arc<std::sync::atomic::AtomicU64>,
}

fn now() -> String {
    crate::timefmt::iso(chrono::Utc::now())
}

impl Store {
    /// Opens (creating it if needed) the database at `path`, migrated to
    /// the newest schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            boards: Arc::default(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&conn)
    }

    /// The boards' generation: it changes whenever a competition's
    /// submissions or teams do.
    pub fn boards_generation(&self) -> u64 {
        self.boards.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A write that can change a board was made (after it commits).
    pub(super) fn boards_changed(&self) {
        self.boards
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the database answers (`/readyz`).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab.db from before schema versions opens, with its users and
    /// tokens, and records kernels with their grants.
    #[test]
    fn an_old_database_opens_with_its_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        let store = Store::open(&path).unwrap();
        store.add_user("alice", Role::Trainer, None).unwrap();
        let (_, token) = store.create_token("alice", "cli").unwrap();
        // Back to an unversioned database without the later columns.
        store
            .with(|c| {
                c.execute_batch(
                    "PRAGMA user_version = 0; DROP TABLE kernels;
                     CREATE TABLE kernels (id TEXT PRIMARY KEY, owner TEXT NOT NULL, spec TEXT NOT NULL,
                        connection TEXT NOT NULL, locator TEXT NOT NULL, created TEXT NOT NULL);
                     DROP INDEX tokens_by_user; DROP INDEX usage_by_user; DROP TABLE identities;
                     ALTER TABLE users DROP COLUMN email; ALTER TABLE users DROP COLUMN deactivated;
                     ALTER TABLE tokens DROP COLUMN kind; ALTER TABLE tokens DROP COLUMN expires;
                     ALTER TABLE tokens DROP COLUMN idle_s; ALTER TABLE tokens DROP COLUMN last_used;",
                )?;
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let user = store.user_for_token(&token).unwrap().unwrap();
        assert_eq!((user.name.as_str(), user.role), ("alice", Role::Trainer));
        let row = KernelRow {
            id: uuid::Uuid::new_v4(),
            owner: "alice".into(),
            spec: "python3".into(),
            connection: "{}".into(),
            locator: "{}".into(),
            created: now(),
            resources: r#"{"gpus":1}"#.into(),
        };
        store.save_kernel(&row).unwrap();
        assert_eq!(store.kernels().unwrap()[0].resources, row.resources);
    }
}
