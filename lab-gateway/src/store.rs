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

use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Engineer,
    Trainer,
    Ops,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Engineer => "engineer",
            Role::Trainer => "trainer",
            Role::Ops => "ops",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Role {
        match s {
            "admin" => Role::Admin,
            "ops" => Role::Ops,
            "trainer" => Role::Trainer,
            _ => Role::Engineer,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub group: Option<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A kernel as persisted, for re-attaching after a gateway restart.
#[derive(Debug, Clone)]
pub struct KernelRow {
    pub id: uuid::Uuid,
    pub owner: String,
    pub spec: String,
    pub connection: String,
    pub locator: String,
    pub created: String,
    /// The admission grant, as JSON (empty for none).
    pub resources: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    NoUser(String),
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
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;
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
    created TEXT NOT NULL
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
";

/// A session (a notebook path bound to a kernel), kept so that a restarted
/// gateway gives each notebook back its kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: uuid::Uuid,
    pub owner: String,
    pub path: String,
    pub name: String,
    pub kind: String,
    pub kernel_id: uuid::Uuid,
}

/// One kernel's stretch of resource use, in the ledger.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageRow {
    pub kernel_id: uuid::Uuid,
    pub user: String,
    pub group: String,
    pub spec: String,
    pub model: Option<String>,
    pub gpus: u32,
    pub cpus: f64,
    /// Unix milliseconds.
    pub started: u64,
    pub ended: Option<u64>,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(COURSES_SCHEMA)?;
        // Added after the first release: the admitted GPUs of a kernel.
        let has_resources: i64 = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('kernels') WHERE name = 'resources'",
            [],
            |r| r.get(0),
        )?;
        if has_resources == 0 {
            conn.execute_batch(
                "ALTER TABLE kernels ADD COLUMN resources TEXT NOT NULL DEFAULT ''",
            )?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&conn)
    }

    /// Whether the database answers (`/readyz`).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .map(drop)
    }

    /// Adds a user. The name becomes a folder (their notebook root) and part
    /// of pod names, so it is one plain name: letters, digits, `-`, `_`, `.`,
    /// not starting with a dot.
    pub fn add_user(&self, name: &str, role: Role, group: Option<&str>) -> Result<(), StoreError> {
        scheduler::quota::validate_name(name)
            .map_err(|e| StoreError::InvalidName(format!("user name: {e}")))?;
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO users (name, role, grp, created) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), group, now()],
            )?;
            if n == 0 {
                return Err(StoreError::UserExists(name.to_owned()));
            }
            Ok(())
        })
    }

    /// Creates a token for `user`; returns (token id, plain token).
    pub fn create_token(&self, user: &str, label: &str) -> Result<(String, String), StoreError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        self.with(|c| {
            let exists: Option<String> = c
                .query_row("SELECT name FROM users WHERE name = ?1", [user], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NoUser(user.to_owned()));
            }
            c.execute(
                "INSERT INTO tokens (id, user_name, sha256, label, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, user, hash_token(&token), label, now()],
            )?;
            Ok(())
        })?;
        Ok((id, token))
    }

    /// Revokes a token by its id, or by the token itself. Returns whether one was revoked.
    pub fn revoke_token(&self, id_or_token: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE (id = ?2 OR sha256 = ?3) AND revoked IS NULL",
                params![now(), id_or_token, hash_token(id_or_token)],
            )?;
            Ok(n > 0)
        })
    }

    /// Revokes a browser session (a token `/api/login` created) by its
    /// token; API tokens are left alone. Returns whether one was revoked.
    pub fn revoke_session(&self, token: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE sha256 = ?2 AND label = 'browser' AND revoked IS NULL",
                params![now(), hash_token(token)],
            )?;
            Ok(n > 0)
        })
    }

    /// Revokes every live token of `user` with this label (the previous start's login token).
    pub fn revoke_label(&self, user: &str, label: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE user_name = ?2 AND label = ?3 AND revoked IS NULL",
                params![now(), user, label],
            )?)
        })
    }

    /// A one-time login code for `user`, valid `ttl` from now: what the
    /// printed login URL carries instead of a token. Stored hashed, as tokens.
    pub fn create_login_code(
        &self,
        user: &str,
        ttl: std::time::Duration,
    ) -> Result<String, StoreError> {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let code = hex::encode(bytes);
        let expires = chrono::Utc::now().timestamp() + ttl.as_secs() as i64;
        self.with(|c| {
            let exists: Option<String> = c
                .query_row("SELECT name FROM users WHERE name = ?1", [user], |r| {
                    r.get(0)
                })
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NoUser(user.to_owned()));
            }
            c.execute(
                "DELETE FROM login_codes WHERE expires < ?1",
                [chrono::Utc::now().timestamp()],
            )?;
            c.execute(
                "INSERT INTO login_codes (sha256, user_name, expires) VALUES (?1, ?2, ?3)",
                params![hash_token(&code), user, expires],
            )?;
            Ok(())
        })?;
        Ok(code)
    }

    /// The user a live login code is for; `redeem` also uses it up, so a
    /// code logs in once.
    pub fn login_code_user(&self, code: &str, redeem: bool) -> Result<Option<User>, StoreError> {
        self.with(|c| {
            let user = c
                .query_row(
                    "SELECT u.name, u.role, u.grp FROM login_codes l JOIN users u ON u.name = l.user_name
                     WHERE l.sha256 = ?1 AND l.expires >= ?2",
                    params![hash_token(code), chrono::Utc::now().timestamp()],
                    |r| {
                        Ok(User {
                            name: r.get(0)?,
                            role: Role::parse(&r.get::<_, String>(1)?),
                            group: r.get(2)?,
                        })
                    },
                )
                .optional()?;
            if redeem && user.is_some() {
                // Whoever deletes the row redeems it: two racing logins get one session.
                let n = c.execute("DELETE FROM login_codes WHERE sha256 = ?1", [hash_token(code)])?;
                if n == 0 {
                    return Ok(None);
                }
            }
            Ok(user)
        })
    }

    /// The user a live token belongs to.
    pub fn user_for_token(&self, token: &str) -> Result<Option<User>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT u.name, u.role, u.grp FROM tokens t JOIN users u ON u.name = t.user_name
                 WHERE t.sha256 = ?1 AND t.revoked IS NULL",
                [hash_token(token)],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        role: Role::parse(&r.get::<_, String>(1)?),
                        group: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    pub fn save_kernel(&self, k: &KernelRow) -> Result<(), StoreError> {
        self.with(|c| {
            let sealed = sealing::seal(c, &k.id.to_string(), &k.connection)?;
            c.execute(
                "INSERT OR REPLACE INTO kernels (id, owner, spec, connection, locator, created, resources)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    k.id.to_string(),
                    k.owner,
                    k.spec,
                    sealed,
                    k.locator,
                    k.created,
                    k.resources
                ],
            )?;
            Ok(())
        })
    }

    pub fn save_session(&self, row: &SessionRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO sessions (id, owner, path, name, kind, kernel_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.id.to_string(),
                    row.owner,
                    row.path,
                    row.name,
                    row.kind,
                    row.kernel_id.to_string()
                ],
            )?;
            Ok(())
        })
    }

    pub fn delete_session(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE id = ?1", [id.to_string()])?;
            Ok(())
        })
    }

    pub fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id, owner, path, name, kind, kernel_id FROM sessions")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, owner, path, name, kind, kernel)| {
                    Some(SessionRow {
                        id: id.parse().ok()?,
                        owner,
                        path,
                        name,
                        kind,
                        kernel_id: kernel.parse().ok()?,
                    })
                })
                .collect())
        })
    }

    pub fn delete_kernel(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM kernels WHERE id = ?1", [id.to_string()])?;
            Ok(())
        })
    }

    pub fn kernels(&self) -> Result<Vec<KernelRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, owner, spec, connection, locator, created, resources FROM kernels",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(
                    |(id, owner, spec, connection, locator, created, resources)| {
                        let connection: String = connection;
                        let connection = match sealing::open(c, &id, &connection) {
                            Ok(plain) => plain,
                            Err(e) => {
                                tracing::warn!(kernel_id = %id, "cannot unseal the kernel's connection: {e}");
                                return None;
                            }
                        };
                        Some(KernelRow {
                            id: id.parse().ok()?,
                            owner,
                            spec,
                            connection,
                            locator,
                            created,
                            resources,
                        })
                    },
                )
                .collect())
        })
    }
}

/// A start waiting for GPUs, kept so a restarted gateway queues it again.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRow {
    pub id: uuid::Uuid,
    pub owner: String,
    /// The start request, as JSON.
    pub request: String,
}

impl Store {
    pub fn save_queued(&self, q: &QueuedRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO queued (id, owner, request, seq)
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM queued))",
                params![q.id.to_string(), q.owner, q.request],
            )?;
            Ok(())
        })
    }

    pub fn delete_queued(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM queued WHERE id = ?1", [id.to_string()])?;
            Ok(())
        })
    }

    /// Queued starts, oldest first.
    pub fn queued(&self) -> Result<Vec<QueuedRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id, owner, request FROM queued ORDER BY seq")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<(String, String, String)>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, owner, request)| {
                    Some(QueuedRow {
                        id: id.parse().ok()?,
                        owner,
                        request,
                    })
                })
                .collect())
        })
    }
}

impl Store {
    /// A setting and its version (bumped on every write), if set.
    pub fn setting(&self, key: &str) -> Result<Option<(String, i64)>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT value, version FROM settings WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<i64, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "INSERT INTO settings (key, value, version) VALUES (?1, ?2, 1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = version + 1
                 RETURNING version",
                params![key, value],
                |r| r.get(0),
            )?)
        })
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT name, role, grp FROM users ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(User {
                        name: r.get(0)?,
                        role: Role::parse(&r.get::<_, String>(1)?),
                        group: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self.users()?.into_iter().find(|u| u.name == name))
    }

    /// Moves a user into a group (`None`: into none).
    pub fn set_user_group(&self, name: &str, group: Option<&str>) -> Result<(), StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE users SET grp = ?1 WHERE name = ?2",
                params![group, name],
            )?;
            if n == 0 {
                return Err(StoreError::NoUser(name.to_owned()));
            }
            Ok(())
        })
    }

    /// Records that a kernel started holding resources.
    pub fn ledger_start(&self, row: &UsageRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO usage (kernel_id, user_name, grp, spec, model, gpus, cpus, started, ended)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)",
                params![
                    row.kernel_id.to_string(),
                    row.user,
                    row.group,
                    row.spec,
                    row.model,
                    row.gpus,
                    row.cpus,
                    row.started as i64
                ],
            )?;
            Ok(())
        })
    }

    /// Records that a kernel stopped holding resources (once).
    pub fn ledger_end(&self, kernel: uuid::Uuid, ended: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE usage SET ended = ?1 WHERE kernel_id = ?2 AND ended IS NULL",
                params![ended as i64, kernel.to_string()],
            )?;
            Ok(())
        })
    }

    /// Ledger rows that overlap `[from, to)` (open rows count as running).
    pub fn usage_between(&self, from: u64, to: u64) -> Result<Vec<UsageRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT kernel_id, user_name, grp, spec, model, gpus, cpus, started, ended FROM usage
                 WHERE started < ?2 AND (ended IS NULL OR ended > ?1) ORDER BY started",
            )?;
            let rows = stmt
                .query_map(params![from as i64, to as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        UsageRow {
                            kernel_id: uuid::Uuid::nil(),
                            user: r.get(1)?,
                            group: r.get(2)?,
                            spec: r.get(3)?,
                            model: r.get(4)?,
                            gpus: r.get(5)?,
                            cpus: r.get(6)?,
                            started: r.get::<_, i64>(7)? as u64,
                            ended: r.get::<_, Option<i64>>(8)?.map(|e| e as u64),
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, mut row)| {
                    row.kernel_id = id.parse().ok()?;
                    Some(row)
                })
                .collect())
        })
    }

    /// Closes the open rows of kernels that are not running any more.
    pub fn ledger_close_except(
        &self,
        running: &[uuid::Uuid],
        ended: u64,
    ) -> Result<usize, StoreError> {
        let open: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare("SELECT kernel_id FROM usage WHERE ended IS NULL")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let mut closed = 0;
        for id in open {
            if let Ok(k) = id.parse::<uuid::Uuid>()
                && !running.contains(&k)
            {
                self.ledger_end(k, ended)?;
                closed += 1;
            }
        }
        Ok(closed)
    }
}

/// Kernel connections at rest: sealed with a key from a 0600 file beside
/// the database, never written in plain text.
mod sealing {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::path::PathBuf;

    use base64::Engine as _;
    use rand::RngCore;
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    use rusqlite::Connection;

    use super::StoreError;

    const PREFIX: &str = "sealed-v1:";

    /// The key file of the database `c`; `None` for an in-memory database,
    /// whose key lives as long as the process.
    fn key_file(c: &Connection) -> Option<PathBuf> {
        let db = PathBuf::from(c.path().filter(|p| !p.is_empty())?);
        Some(db.with_file_name("kernel-keys.secret"))
    }

    fn key(c: &Connection) -> Result<LessSafeKey, StoreError> {
        static MEMORY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let bytes = match key_file(c) {
            None => *MEMORY.get_or_init(|| {
                let mut k = [0u8; 32];
                rand::rng().fill_bytes(&mut k);
                k
            }),
            Some(path) => {
                let io = |source| StoreError::KeyFile {
                    path: path.display().to_string(),
                    source,
                };
                let mut fresh = [0u8; 32];
                rand::rng().fill_bytes(&mut fresh);
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                {
                    Ok(mut f) => f
                        .write_all(&fresh)
                        .and_then(|()| f.sync_all())
                        .map_err(io)?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(e)),
                }
                let read = std::fs::read(&path).map_err(io)?;
                read.try_into()
                    .map_err(|_| io(std::io::Error::other("it does not hold a 32-byte key")))?
            }
        };
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| StoreError::KeyFile {
                path: "(memory)".into(),
                source: std::io::Error::other("not a ChaCha20-Poly1305 key"),
            })?;
        Ok(LessSafeKey::new(unbound))
    }

    /// `plain`, sealed for the kernel `id` (the row it may be read back from).
    pub fn seal(c: &Connection, id: &str, plain: &str) -> Result<String, StoreError> {
        let key = key(c)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut buf = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| StoreError::KeyFile {
            path: "(seal)".into(),
            source: std::io::Error::other("sealing failed"),
        })?;
        let mut out = nonce.to_vec();
        out.extend(buf);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// What `seal` sealed; a row from before sealing is returned as it is.
    pub fn open(c: &Connection, id: &str, stored: &str) -> Result<String, StoreError> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let bad = |what: &str| StoreError::KeyFile {
            path: key_file(c).map_or("(memory)".into(), |p| p.display().to_string()),
            source: std::io::Error::other(what.to_owned()),
        };
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("a sealed connection is not base64"))?;
        if raw.len() < NONCE_LEN {
            return Err(bad("a sealed connection is too short"));
        }
        let mut body = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).map_err(|_| bad("bad nonce"))?;
        let plain = key(c)?
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut body)
            .map_err(|_| bad("a sealed connection does not open with this key"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad("a sealed connection is not UTF-8"))
    }
}

/// Who may change a course: its owner (who first published to it) and the
/// co-trainers the owner names. Courses published before owners were
/// recorded have no row: only admins change them until one names an owner.
const COURSES_SCHEMA: &str = "
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

/// A course's owner and co-trainers (sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct CourseStaff {
    pub owner: String,
    pub trainers: Vec<String>,
}

impl Store {
    /// The owner and co-trainers of `course`; `None` if no owner is recorded.
    pub fn course_staff(&self, course: &str) -> Result<Option<CourseStaff>, StoreError> {
        self.with(|c| {
            let owner: Option<String> = c
                .query_row(
                    "SELECT owner FROM course_owners WHERE course = ?1",
                    params![course],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(owner) = owner else {
                return Ok(None);
            };
            let mut stmt = c.prepare(
                "SELECT user_name FROM course_trainers WHERE course = ?1 ORDER BY user_name",
            )?;
            let trainers = stmt
                .query_map(params![course], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(Some(CourseStaff { owner, trainers }))
        })
    }

    /// Makes `user` the owner of `course` unless it has one; returns the
    /// owner either way (two first publishes at once: one wins).
    pub fn claim_course(&self, course: &str, user: &str) -> Result<String, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO course_owners (course, owner) VALUES (?1, ?2)",
                params![course, user],
            )?;
            Ok(c.query_row(
                "SELECT owner FROM course_owners WHERE course = ?1",
                params![course],
                |r| r.get(0),
            )?)
        })
    }

    /// Gives `course` to `owner` (an admin's decision).
    pub fn set_course_owner(&self, course: &str, owner: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO course_owners (course, owner) VALUES (?1, ?2)",
                params![course, owner],
            )?;
            c.execute(
                "DELETE FROM course_trainers WHERE course = ?1 AND user_name = ?2",
                params![course, owner],
            )?;
            Ok(())
        })
    }

    pub fn add_course_trainer(&self, course: &str, user: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO course_trainers (course, user_name) VALUES (?1, ?2)",
                params![course, user],
            )?;
            Ok(())
        })
    }

    /// Whether `user` was a co-trainer of `course`.
    pub fn remove_course_trainer(&self, course: &str, user: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM course_trainers WHERE course = ?1 AND user_name = ?2",
                params![course, user],
            )? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13, item 4: a kernel's HMAC key is never in the database file
    /// in plain text, and it reads back whole.
    #[test]
    fn kernel_keys_are_sealed_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        let key = "0123456789abcdef-kernel-hmac-key";
        let row = KernelRow {
            id: uuid::Uuid::new_v4(),
            owner: "alice".into(),
            spec: "python3".into(),
            connection: format!(r#"{{"key":"{key}","signature_scheme":"hmac-sha256"}}"#),
            locator: "{}".into(),
            created: "2026-01-01T00:00:00Z".into(),
            resources: String::new(),
        };
        store.save_kernel(&row).unwrap();
        let stored: String = store
            .with(|c| Ok(c.query_row("SELECT connection FROM kernels", [], |r| r.get(0))?))
            .unwrap();
        assert!(!stored.contains(key), "the key is in lab.db: {stored}");
        let back = store.kernels().unwrap();
        assert_eq!(back[0].connection, row.connection);
    }

    #[test]
    fn tokens_are_stored_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store
            .add_user("alice", Role::Engineer, Some("cohort-1"))
            .unwrap();
        let (id, token) = store.create_token("alice", "cli").unwrap();
        assert_eq!(store.user_for_token(&token).unwrap().unwrap().name, "alice");
        let raw = std::fs::read(dir.path().join("lab.db")).unwrap();
        let wal = std::fs::read(dir.path().join("lab.db-wal")).unwrap_or_default();
        let needle = token.as_bytes();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
        assert!(store.revoke_token(&id).unwrap());
        assert!(store.user_for_token(&token).unwrap().is_none());
    }

    #[test]
    fn a_new_login_token_retires_the_previous_one_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("admin", Role::Admin, None).unwrap();
        let (_, api) = store.create_token("admin", "cli").unwrap();
        let (_, first) = store.create_token("admin", "login").unwrap();
        assert_eq!(store.revoke_label("admin", "login").unwrap(), 1);
        let (_, second) = store.create_token("admin", "login").unwrap();
        assert!(store.user_for_token(&first).unwrap().is_none());
        assert!(store.user_for_token(&second).unwrap().is_some());
        assert!(store.user_for_token(&api).unwrap().is_some());
    }

    #[test]
    fn a_user_cannot_be_added_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("bob", Role::Ops, None).unwrap();
        for bad in ["../x", ".pool", "", "a/b", "a b"] {
            assert!(
                matches!(
                    store.add_user(bad, Role::Engineer, None),
                    Err(StoreError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            store.add_user("bob", Role::Ops, None),
            Err(StoreError::UserExists(_))
        ));
    }
}
