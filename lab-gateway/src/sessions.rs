//! Sessions: a notebook path bound to a kernel, as Jupyter Server models them.
//!
//! A session belongs to the user who made it; others get 404. Deleting a
//! session shuts its kernel down, as Jupyter Server does. Sessions are kept
//! in SQLite beside their kernels: a restarted gateway re-attaches the
//! kernels and gives each notebook back its session, so a reopened notebook
//! finds its kernel (and its variables) instead of starting another.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::kernels::{Kernel, KernelError, KernelManager, StartError, StartRequest};
use crate::store::{SessionRow, Store, User};

/// Why a session request failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("Session not found: {0}")]
    NotFound(String),
    #[error("a session needs a path")]
    NoPath,
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

#[derive(Clone)]
struct Session {
    id: uuid::Uuid,
    owner: String,
    path: String,
    name: String,
    kind: String,
    kernel: Arc<Kernel>,
}

impl Session {
    fn row(&self) -> SessionRow {
        SessionRow {
            id: self.id,
            owner: self.owner.clone(),
            path: self.path.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            kernel_id: self.kernel.id,
        }
    }

    fn model(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "path": self.path,
            "name": self.name,
            "type": self.kind,
            "kernel": self.kernel.model(),
            "notebook": {"path": self.path, "name": self.name},
        })
    }
}

/// `POST /api/sessions` and `PATCH` bodies.
#[derive(Debug, Default, Deserialize)]
pub struct SessionRequest {
    pub path: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub kernel: Option<KernelRef>,
    pub notebook: Option<NotebookRef>,
}

#[derive(Debug, Default, Deserialize)]
pub struct KernelRef {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NotebookRef {
    pub path: Option<String>,
}

#[derive(Default)]
pub struct Sessions {
    by_id: RwLock<HashMap<uuid::Uuid, Session>>,
    /// Where sessions are kept; `None` keeps them in memory only.
    store: Option<Store>,
}

impl Sessions {
    /// Sessions kept in `store`.
    pub fn persistent(store: Store) -> Sessions {
        Sessions {
            by_id: RwLock::default(),
            store: Some(store),
        }
    }

    /// At start, after the kernels were re-attached: the kept sessions
    /// whose kernel runs come back; the others are forgotten.
    pub fn restore(&self, kernels: &KernelManager) {
        let Some(store) = &self.store else {
            return;
        };
        let rows = match store.sessions() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the sessions");
                return;
            }
        };
        let running: HashMap<uuid::Uuid, Arc<Kernel>> =
            kernels.all().into_iter().map(|k| (k.id, k)).collect();
        let mut map = self.by_id.write();
        for row in rows {
            match running.get(&row.kernel_id) {
                Some(kernel) => {
                    map.insert(
                        row.id,
                        Session {
                            id: row.id,
                            owner: row.owner,
                            path: row.path,
                            name: row.name,
                            kind: row.kind,
                            kernel: kernel.clone(),
                        },
                    );
                }
                None => self.forget(row.id),
            }
        }
    }

    fn keep(&self, s: &Session) {
        if let Some(store) = &self.store
            && let Err(e) = store.save_session(&s.row())
        {
            tracing::warn!(session = %s.id, error = %e, "cannot keep a session");
        }
    }

    fn forget(&self, id: uuid::Uuid) {
        if let Some(store) = &self.store
            && let Err(e) = store.delete_session(id)
        {
            tracing::warn!(session = %id, error = %e, "cannot forget a session");
        }
    }

    fn visible(&self, user: &User, id: &str) -> Result<Session, SessionError> {
        let not_found = || SessionError::NotFound(id.to_owned());
        let id: uuid::Uuid = id.parse().map_err(|_| not_found())?;
        let map = self.by_id.read();
        match map.get(&id) {
            Some(s) if s.owner == user.name || user.is_admin() => Ok(s.clone()),
            _ => Err(not_found()),
        }
    }

    /// Sessions whose kernel still exists, for `user`.
    pub fn list(&self, user: &User, kernels: &Arc<KernelManager>) -> Vec<Value> {
        let live: std::collections::HashSet<uuid::Uuid> =
            kernels.all().iter().map(|k| k.id).collect();
        let mut map = self.by_id.write();
        map.retain(|id, s| {
            let alive = live.contains(&s.kernel.id);
            if !alive {
                self.forget(*id);
            }
            alive
        });
        map.values()
            .filter(|s| s.owner == user.name || user.is_admin())
            .map(Session::model)
            .collect()
    }

    pub fn get(&self, user: &User, id: &str) -> Result<Value, SessionError> {
        Ok(self.visible(user, id)?.model())
    }

    pub async fn create(
        &self,
        user: &User,
        kernels: &Arc<KernelManager>,
        req: SessionRequest,
    ) -> Result<Value, SessionError> {
        let path = req
            .path
            .or(req.notebook.and_then(|n| n.path))
            .ok_or(SessionError::NoPath)?;
        // Jupyter Server returns the existing session for the same path.
        {
            let map = self.by_id.read();
            if let Some(s) = map
                .values()
                .find(|s| s.owner == user.name && s.path == path)
            {
                return Ok(s.model());
            }
        }
        let kernel_ref = req.kernel.unwrap_or_default();
        let kernel = match kernel_ref.id {
            Some(id) => kernels.get_for(user, &id)?,
            None => {
                kernels
                    .start_running(
                        user,
                        StartRequest {
                            name: kernel_ref.name,
                            folder: notebook_folder(&path),
                            ..Default::default()
                        },
                    )
                    .await?
            }
        };
        let session = Session {
            id: uuid::Uuid::new_v4(),
            owner: user.name.clone(),
            name: req
                .name
                .unwrap_or_else(|| path.rsplit('/').next().unwrap_or(&path).to_owned()),
            path,
            kind: req.kind.unwrap_or_else(|| "notebook".into()),
            kernel,
        };
        let model = session.model();
        self.keep(&session);
        self.by_id.write().insert(session.id, session);
        Ok(model)
    }

    pub async fn update(
        &self,
        user: &User,
        kernels: &Arc<KernelManager>,
        id: &str,
        req: SessionRequest,
    ) -> Result<Value, SessionError> {
        let mut s = self.visible(user, id)?;
        if let Some(p) = req.path.or(req.notebook.and_then(|n| n.path)) {
            s.path = p;
        }
        if let Some(n) = req.name {
            s.name = n;
        }
        if let Some(k) = req.kind {
            s.kind = k;
        }
        if let Some(k) = req.kernel {
            s.kernel = match (k.id, k.name) {
                (Some(id), _) => kernels.get_for(user, &id)?,
                (None, Some(name)) if name != s.kernel.spec => {
                    let old = s.kernel.clone();
                    let new = kernels
                        .start_running(
                            user,
                            StartRequest {
                                name: Some(name),
                                folder: notebook_folder(&s.path),
                                ..Default::default()
                            },
                        )
                        .await?;
                    kernels.shutdown(&old).await?;
                    new
                }
                _ => s.kernel,
            };
        }
        let model = s.model();
        self.keep(&s);
        self.by_id.write().insert(s.id, s);
        Ok(model)
    }

    pub async fn delete(
        &self,
        user: &User,
        kernels: &Arc<KernelManager>,
        id: &str,
    ) -> Result<(), SessionError> {
        let s = self.visible(user, id)?;
        self.by_id.write().remove(&s.id);
        self.forget(s.id);
        if kernels.get_for(user, &s.kernel.id.to_string()).is_ok() {
            kernels.shutdown(&s.kernel).await?;
        }
        Ok(())
    }
}

/// The folder a session's kernel starts in, as Jupyter Server starts it:
/// the notebook's, relative to the user's folder; `None` for a notebook
/// at the top, or a path that is not a plain relative one (the kernel
/// then starts at the top of the user's folder).
fn notebook_folder(path: &str) -> Option<std::path::PathBuf> {
    use std::path::{Component, Path};
    let parent = Path::new(path).parent()?;
    let plain = parent
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && !parent.as_os_str().is_empty()).then(|| parent.to_path_buf())
}

#[cfg(test)]
mod folder_tests {
    use super::notebook_folder;

    #[test]
    fn a_notebook_kernel_starts_in_its_folder_never_outside() {
        assert_eq!(notebook_folder("ml101/squares.ipynb"), Some("ml101".into()));
        assert_eq!(notebook_folder("a/b/c.ipynb"), Some("a/b".into()));
        for top in [
            "c.ipynb",
            "",
            "../x/c.ipynb",
            "/etc/c.ipynb",
            "a/../c.ipynb",
            "./c.ipynb",
        ] {
            assert_eq!(notebook_folder(top), None, "{top:?}");
        }
    }
}
