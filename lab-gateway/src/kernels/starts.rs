//! Every kernel the gateway knows, in one map: a start that waits (for a
//! GPU, or for its backend) or a kernel that runs.
//!
//! A start's entry is made before admission is asked, so whatever admission
//! decides, now or later, finds it. The move from waiting to running happens
//! under the map's lock, together with taking a reclaim that came while the
//! kernel launched: a reclaim either finds the kernel running or leaves its
//! word on the start, never neither.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use chrono::{DateTime, Utc};
use scheduler::Ticket;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::error::StartError;
use super::kernel::Kernel;
use super::pool::Prespawned;
use super::resources::{ResourceRequest, Restrictions};
use crate::store::User;

/// Where a start stands.
#[derive(Clone)]
pub enum StartState {
    Waiting,
    Started(Arc<Kernel>),
    /// Refused after queueing, or failed to launch once admitted.
    Failed(StartError),
    Cancelled,
}

/// What a waiting start is waiting for.
#[derive(Debug, Clone)]
enum Phase {
    /// Admission's answer, or a GPU.
    Queued,
    /// Its backend: a pod waiting for a node, pulling its image.
    Launching { resources: Value, progress: String },
}

/// A reclaim of GPUs that came while the kernel launched.
#[derive(Debug, Clone)]
pub struct Reclaim {
    pub for_group: String,
    pub deadline: scheduler::Millis,
}

/// A start the client may be answered before it runs: GET shows it, a
/// websocket waits for it, DELETE cancels it.
pub struct Start {
    pub id: uuid::Uuid,
    pub user: User,
    pub spec: String,
    pub created: DateTime<Utc>,
    pub env: BTreeMap<String, String>,
    /// What it asked for, resolved (CPU and memory go to the backend).
    pub resources: ResourceRequest,
    /// No network, a memory limit (grading kernels).
    pub restrictions: Restrictions,
    /// Where it starts, relative to the user's folder (`StartRequest::folder`).
    pub folder: Option<std::path::PathBuf>,
    state: watch::Sender<StartState>,
    phase: Mutex<Phase>,
    reclaim: Mutex<Option<Reclaim>>,
    /// A warm-pool kernel set aside for it (its id is the start's).
    pooled: Mutex<Option<Prespawned>>,
    /// Set when admission admitted it: from then on its launch, not a
    /// cancel, gives its GPUs back (once its process is gone).
    admitted: std::sync::atomic::AtomicBool,
}

impl Start {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: uuid::Uuid,
        user: &User,
        spec: String,
        env: BTreeMap<String, String>,
        resources: ResourceRequest,
        pooled: Option<Prespawned>,
        restrictions: Restrictions,
        folder: Option<std::path::PathBuf>,
    ) -> Arc<Start> {
        Arc::new(Start {
            id,
            user: user.clone(),
            spec,
            created: Utc::now(),
            env,
            resources,
            restrictions,
            folder,
            state: watch::Sender::new(StartState::Waiting),
            phase: Mutex::new(Phase::Queued),
            reclaim: Mutex::new(None),
            pooled: Mutex::new(pooled),
            admitted: Default::default(),
        })
    }

    pub fn state(&self) -> StartState {
        self.state.borrow().clone()
    }

    /// Ends the start's wait, unless it has ended already (a cancel is not
    /// overwritten by a launch that finishes after it).
    pub(crate) fn finish(&self, state: StartState) {
        self.state.send_if_modified(|now| {
            let waiting = matches!(now, StartState::Waiting);
            if waiting {
                *now = state;
            }
            waiting
        });
    }

    /// Marks the start admitted; `false` if it already was.
    pub(crate) fn admit(&self) -> bool {
        !self
            .admitted
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn is_admitted(&self) -> bool {
        self.admitted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the start leaves the queue, or `timeout` passes.
    pub async fn wait(&self, timeout: std::time::Duration) -> StartState {
        let mut rx = self.state.subscribe();
        let waited =
            tokio::time::timeout(timeout, rx.wait_for(|s| !matches!(s, StartState::Waiting))).await;
        if waited.is_err() {
            tracing::trace!(kernel_id = %self.id, "still waiting");
        }
        self.state()
    }

    pub(crate) fn launching(&self, resources: Value) {
        *self.phase.lock() = Phase::Launching {
            resources,
            progress: "starting the kernel".into(),
        };
    }

    pub(crate) fn progress(&self, said: String) {
        if let Phase::Launching { progress, .. } = &mut *self.phase.lock() {
            *progress = said;
        }
    }

    pub(crate) fn take_pooled(&self) -> Option<Prespawned> {
        self.pooled.lock().take()
    }

    pub fn visible_to(&self, user: &User) -> bool {
        user.is_admin() || self.user.name == user.name
    }

    /// The kernel model of a waiting start: `queued` with its place in the
    /// queue, `starting` with its backend's progress, or `dead` with why.
    pub fn model(&self, ticket: Option<&Ticket>) -> Value {
        let state = self.state();
        if let (
            None,
            StartState::Waiting,
            Phase::Launching {
                resources,
                progress,
            },
        ) = (ticket, &state, self.phase.lock().clone())
        {
            return json!({
                "id": self.id.to_string(),
                "name": self.spec,
                "last_activity": crate::timefmt::iso(self.created),
                "execution_state": "starting",
                "connections": 0,
                "resources": resources,
                "launch": {"progress": progress},
            });
        }
        let (state, reason) = match state {
            StartState::Failed(why) => ("dead", Some(why.to_string())),
            StartState::Cancelled => ("dead", Some("cancelled".to_owned())),
            _ => ("queued", None),
        };
        json!({
            "id": self.id.to_string(),
            "name": self.spec,
            "last_activity": crate::timefmt::iso(self.created),
            "execution_state": state,
            "connections": 0,
            "resources": {"gpus": 0},
            "queue": ticket.map(|t| json!({
                "position": t.position,
                "eta_seconds": t.eta_seconds,
                "gpu_model": t.model,
                "waiting_for": t.waiting_for,
            })),
            "reason": reason,
        })
    }
}

enum Entry {
    Waiting(Arc<Start>),
    Running(Arc<Kernel>),
}

/// The one map of starts and kernels.
#[derive(Default)]
pub struct Starts {
    entries: RwLock<HashMap<uuid::Uuid, Entry>>,
}

impl Starts {
    /// Records a start, before admission is asked about it; `false` (and
    /// nothing recorded) if its id is taken.
    pub fn wait(&self, start: Arc<Start>) -> bool {
        match self.entries.write().entry(start.id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Entry::Waiting(start));
                true
            }
        }
    }

    /// Whether `start` is still the waiting entry under its id.
    pub fn is_waiting(&self, start: &Start) -> bool {
        matches!(self.entries.read().get(&start.id), Some(Entry::Waiting(s)) if std::ptr::eq(s.as_ref(), start))
    }

    /// Records a kernel that runs already (re-attached after a restart).
    pub fn running(&self, kernel: Arc<Kernel>) {
        self.entries
            .write()
            .insert(kernel.id, Entry::Running(kernel));
    }

    /// The waiting start `id`.
    pub fn waiting(&self, id: uuid::Uuid) -> Option<Arc<Start>> {
        match self.entries.read().get(&id) {
            Some(Entry::Waiting(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The running kernel `id`.
    pub fn kernel(&self, id: uuid::Uuid) -> Option<Arc<Kernel>> {
        match self.entries.read().get(&id) {
            Some(Entry::Running(k)) => Some(k.clone()),
            _ => None,
        }
    }

    /// Moves a start to running, if it is still waiting (not cancelled);
    /// returns the reclaim that came while it launched. `Err` when the start
    /// is gone, so the caller stops the kernel.
    pub fn run(&self, start: &Start, kernel: Arc<Kernel>) -> Result<Option<Reclaim>, Arc<Kernel>> {
        let mut entries = self.entries.write();
        match entries.get(&start.id) {
            Some(Entry::Waiting(s)) if std::ptr::eq(s.as_ref(), start) => {
                entries.insert(start.id, Entry::Running(kernel));
                Ok(start.reclaim.lock().take())
            }
            _ => Err(kernel),
        }
    }

    /// The kernel to reclaim now, or `None` when it is still starting (the
    /// reclaim is left on the start) or unknown.
    pub fn reclaim(&self, id: uuid::Uuid, reclaim: Reclaim) -> Option<Arc<Kernel>> {
        let entries = self.entries.read();
        match entries.get(&id) {
            Some(Entry::Running(k)) => Some(k.clone()),
            Some(Entry::Waiting(s)) => {
                *s.reclaim.lock() = Some(reclaim);
                None
            }
            None => None,
        }
    }

    /// Forgets the kernel `id` if it is this one.
    pub fn remove_kernel(&self, kernel: &Kernel) {
        let mut entries = self.entries.write();
        if let Some(Entry::Running(k)) = entries.get(&kernel.id)
            && std::ptr::eq(k.as_ref(), kernel)
        {
            entries.remove(&kernel.id);
        }
    }

    /// Forgets a start if it is this one and still waiting; `false` when it
    /// is not (it runs already, or is gone).
    pub fn remove_start(&self, start: &Start) -> bool {
        let mut entries = self.entries.write();
        match entries.get(&start.id) {
            Some(Entry::Waiting(s)) if std::ptr::eq(s.as_ref(), start) => {
                entries.remove(&start.id);
                true
            }
            _ => false,
        }
    }

    /// Every running kernel, oldest first.
    pub fn kernels(&self) -> Vec<Arc<Kernel>> {
        let mut v: Vec<Arc<Kernel>> = self.each(|e| match e {
            Entry::Running(k) => Some(k.clone()),
            Entry::Waiting(_) => None,
        });
        v.sort_by_key(|k| k.created);
        v
    }

    /// Every waiting start, oldest first.
    pub fn starts(&self) -> Vec<Arc<Start>> {
        let mut v: Vec<Arc<Start>> = self.each(|e| match e {
            Entry::Waiting(s) => Some(s.clone()),
            Entry::Running(_) => None,
        });
        v.sort_by_key(|s| s.created);
        v
    }

    fn each<T>(&self, pick: impl Fn(&Entry) -> Option<T>) -> Vec<T> {
        self.entries.read().values().filter_map(pick).collect()
    }
}
