//! The registry of channel sessions and muxes, per kernel.
//!
//! The websocket layer owns this state: a kernel knows nothing of its
//! websockets. An entry is made on a kernel's first websocket and dropped
//! when the kernel is retired (shut down): sessions no websocket holds end
//! then, with their pumps, and the mux's sockets close once the last
//! websocket lets go of them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::mux::Mux;
use super::rate::RateLimits;
use super::session::ChannelSession;
use crate::kernels::Kernel;
use crate::replay::{Budget, Evict, TooManySessions};

/// A session with no websocket for this long is dropped.
const SESSION_GRACE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct KernelChannels {
    /// Websocket sessions by session_id, which outlive a websocket.
    sessions: Mutex<HashMap<String, Arc<ChannelSession>>>,
    /// The shared DEALERs every session's requests go through.
    mux: tokio::sync::Mutex<Option<Arc<Mux>>>,
}

/// Every kernel's channel sessions and mux.
pub struct Channels {
    limits: RateLimits,
    replay: Arc<Budget>,
    kernels: Mutex<HashMap<uuid::Uuid, Arc<KernelChannels>>>,
}

impl Default for Channels {
    fn default() -> Self {
        Channels::new(RateLimits::default(), Arc::new(Budget::default()))
    }
}

impl Channels {
    /// Sessions whose iopub output is held to `limits`, buffered within `replay`.
    pub fn new(limits: RateLimits, replay: Arc<Budget>) -> Self {
        Channels {
            limits,
            replay,
            kernels: Mutex::new(HashMap::new()),
        }
    }

    /// What the channel sessions may buffer for clients that are away.
    pub fn replay(&self) -> &Arc<Budget> {
        &self.replay
    }

    /// The kernel's entry, made on first use; it goes when the kernel retires.
    fn of(self: &Arc<Self>, kernel: &Kernel) -> Arc<KernelChannels> {
        let mut kernels = self.kernels.lock();
        if let Some(k) = kernels.get(&kernel.id) {
            return k.clone();
        }
        let entry = Arc::new(KernelChannels::default());
        if kernel.is_retired() {
            // A websocket of a kernel shut down meanwhile: served, not kept.
            return entry;
        }
        kernels.insert(kernel.id, entry.clone());
        let (registry, id, retired) = (Arc::downgrade(self), kernel.id, kernel.retirement());
        tokio::spawn(async move {
            retired.await;
            if let Some(registry) = registry.upgrade() {
                registry.kernels.lock().remove(&id);
            }
        });
        entry
    }

    /// Finds or creates the channel session for `session_id` on `kernel`; a
    /// new one only while the kernel's owner is within their sessions (`replay`).
    pub fn session_for(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
        session_id: &str,
    ) -> Result<Arc<ChannelSession>, TooManySessions> {
        let entry = self.of(kernel);
        let mut sessions = entry.sessions.lock();
        if let Some(s) = sessions.get(session_id) {
            return Ok(s.clone());
        }
        let user = kernel.owner();
        let s = Arc::new(ChannelSession::new(user.clone(), self.replay.clone()));
        let weak: Weak<dyn Evict> = Arc::downgrade(&s) as Weak<dyn Evict>;
        self.replay.register(&user, weak)?;
        s.start(kernel.clone(), self.limits);
        sessions.insert(session_id.to_owned(), s.clone());
        // Also when its websocket never comes (the upgrade failed): a session
        // nobody attaches to does not stay, nor count against its user.
        self.let_go_unless_attached(kernel.id, session_id.to_owned());
        Ok(s)
    }

    /// The kernel's mux for its current process, connected on first use and
    /// again after a restart.
    pub async fn mux_for(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
    ) -> Result<Arc<Mux>, zeromq::ZmqError> {
        let generation = kernel.current_endpoint().generation;
        let entry = self.of(kernel);
        let mut slot = entry.mux.lock().await;
        if let Some(m) = slot.as_ref()
            && m.generation == generation
        {
            return Ok(m.clone());
        }
        let m = Arc::new(Mux::connect(kernel).await?);
        *slot = Some(m.clone());
        Ok(m)
    }

    /// Drops the session after `SESSION_GRACE` if no websocket is attached then.
    pub(super) fn let_go_unless_attached(self: &Arc<Self>, kernel: uuid::Uuid, session_id: String) {
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(SESSION_GRACE).await;
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let Some(entry) = registry.kernels.lock().get(&kernel).cloned() else {
                return;
            };
            let mut sessions = entry.sessions.lock();
            if let Some(s) = sessions.get(&session_id)
                && s.attached.load(Ordering::SeqCst) == 0
            {
                sessions.remove(&session_id);
            }
        });
    }
}
