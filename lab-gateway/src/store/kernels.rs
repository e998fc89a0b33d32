//! What a restarted gateway picks up again: its kernels (connections
//! sealed, see `sealing`), the sessions binding notebooks to them, and the
//! starts still waiting for GPUs.

use rusqlite::params;

use super::{Store, StoreError, sealing};

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

/// A start waiting for GPUs, kept so a restarted gateway queues it again.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRow {
    pub id: uuid::Uuid,
    pub owner: String,
    /// The start request, as JSON.
    pub request: String,
}

impl Store {
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
}
