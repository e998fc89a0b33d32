//! Sessions: a notebook path bound to a kernel, as Jupyter Server models them.
//!
//! A session belongs to the user who made it; others get 404. Deleting a
//! session shuts its kernel down, as Jupyter Server does. Sessions live in
//! memory: a restarted gateway re-attaches kernels, and clients recreate
//! their sessions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::kernels::{Kernel, KernelManager, StartRequest};
use crate::store::User;

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
}

impl Sessions {
    fn visible(&self, user: &User, id: &str) -> Result<Session, ApiError> {
        let not_found = || ApiError::NotFound(format!("Session not found: {id}"));
        let id: uuid::Uuid = id.parse().map_err(|_| not_found())?;
        let map = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        match map.get(&id) {
            Some(s) if s.owner == user.name || user.is_admin() => Ok(s.clone()),
            _ => Err(not_found()),
        }
    }

    /// Sessions whose kernel still exists, for `user`.
    pub fn list(&self, user: &User, kernels: &Arc<KernelManager>) -> Vec<Value> {
        let live: std::collections::HashSet<uuid::Uuid> =
            kernels.all().iter().map(|k| k.id).collect();
        let mut map = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| live.contains(&s.kernel.id));
        map.values()
            .filter(|s| s.owner == user.name || user.is_admin())
            .map(Session::model)
            .collect()
    }

    pub fn get(&self, user: &User, id: &str) -> Result<Value, ApiError> {
        Ok(self.visible(user, id)?.model())
    }

    pub async fn create(
        &self,
        user: &User,
        kernels: &Arc<KernelManager>,
        req: SessionRequest,
    ) -> Result<Value, ApiError> {
        let path = req
            .path
            .or(req.notebook.and_then(|n| n.path))
            .ok_or_else(|| ApiError::BadRequest("a session needs a path".into()))?;
        // Jupyter Server returns the existing session for the same path.
        {
            let map = self.by_id.read().unwrap_or_else(|e| e.into_inner());
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
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session.id, session);
        Ok(model)
    }

    pub async fn update(
        &self,
        user: &User,
        kernels: &Arc<KernelManager>,
        id: &str,
        req: SessionRequest,
    ) -> Result<Value, ApiError> {
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
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(s.id, s);
        Ok(model)
    }

    pub async fn delete(
        &self,
        user: &User,
        kernels: &Arc<KernelManager>,
        id: &str,
    ) -> Result<(), ApiError> {
        let s = self.visible(user, id)?;
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&s.id);
        if kernels.get_for(user, &s.kernel.id.to_string()).is_ok() {
            kernels.shutdown(&s.kernel).await?;
        }
        Ok(())
    }
}
