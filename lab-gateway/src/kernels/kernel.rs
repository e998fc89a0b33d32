//! A running kernel as the gateway sees it: who owns it, where it is, what it
//! is doing, and the fan-out of its iopub messages.
//!
//! Each kernel has one iopub subscriber in the gateway (see `supervisor`),
//! whose messages fan out to every subscriber, a websocket session each,
//! through its own bounded queue. This module knows nothing of websockets or
//! of how a kernel is started; it is the model the others share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use chrono::{DateTime, Utc};
use jupyter_protocol::ConnectionInfo;
use launch::KernelLocator;
use scheduler::Grant;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::notice::{NoticeKind, notice};
use super::resources::Restrictions;
use crate::kernel_client::{MessageLimits, Oversized};
use crate::store::User;
use crate::wire::{Channel, RawMessage};

/// iopub messages a subscriber may fall behind before it is told some were dropped.
/// Each subscriber has its own queue, freed as it reads: no ring of old messages
/// stays alive, however large they were.
const FANOUT: usize = 4096;

/// Where a kernel is now; replaced on restart.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub connection: ConnectionInfo,
    pub locator: KernelLocator,
    /// Bumped on every restart, so websockets reconnect their sockets.
    pub generation: u64,
}

#[derive(Debug)]
struct Activity {
    execution_state: String,
    /// Wall time, for the model's `last_activity`.
    last_activity: DateTime<Utc>,
    /// The runtime's clock, for culling (tests pause it).
    idle_since: Instant,
    connections: usize,
    /// When its clients were warned that it will be culled.
    warned: Option<Instant>,
}

/// What the culler reads of a kernel.
#[derive(Debug, Clone)]
pub struct ActivityView {
    pub state: String,
    pub idle_for: Duration,
    pub age: Duration,
    pub connections: usize,
    pub has_gpus: bool,
    pub warned: Option<Instant>,
}

struct Subscriber {
    tx: mpsc::Sender<Arc<RawMessage>>,
    dropped: Arc<AtomicU64>,
}

/// One subscriber's iopub queue, and how many messages it lost to a full queue.
pub struct Subscription {
    pub rx: mpsc::Receiver<Arc<RawMessage>>,
    pub dropped: Arc<AtomicU64>,
}

pub struct Kernel {
    pub id: uuid::Uuid,
    /// Whose it is (a warm-pool kernel becomes one only when handed over).
    owner: String,
    pub spec: String,
    pub created: DateTime<Utc>,
    /// `created` on the runtime's clock (for the maximum runtime).
    started: Instant,
    pub(crate) interrupt_by_message: bool,
    endpoint: watch::Sender<Endpoint>,
    activity: Mutex<Activity>,
    subscribers: Mutex<Vec<Subscriber>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    message_limits: MessageLimits,
    /// The parent header of the request the kernel is busy with: oversized
    /// output the gateway drops is reported under it.
    busy_parent: Mutex<bytes::Bytes>,
    /// The GPUs admission gave it (none for a CPU kernel).
    grant: Mutex<Option<Grant>>,
    /// What the gateway imposed at its start (a grading kernel: offline,
    /// a memory limit), which every restart imposes again.
    pub restrictions: Restrictions,
    /// The folder it started in when not its owner's own (a notebook's);
    /// a restart starts there again.
    folder: Mutex<Option<std::path::PathBuf>>,
    /// Set once the kernel is shut down; what hangs on it (websocket
    /// sessions) lets go.
    retired: watch::Sender<bool>,
    /// Set by the supervisor when the process is gone (never by anything
    /// the kernel sends, unlike the execution state); a new process clears it.
    died: std::sync::atomic::AtomicBool,
}

impl Kernel {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: uuid::Uuid,
        owner: String,
        spec: String,
        created: DateTime<Utc>,
        interrupt_by_message: bool,
        endpoint: Endpoint,
        state: &str,
        message_limits: MessageLimits,
        restrictions: Restrictions,
    ) -> Arc<Kernel> {
        let now = Instant::now();
        let age = (Utc::now() - created).to_std().unwrap_or_default();
        Arc::new(Kernel {
            id,
            owner,
            spec,
            created,
            started: now.checked_sub(age).unwrap_or(now),
            interrupt_by_message,
            endpoint: watch::Sender::new(endpoint),
            activity: Mutex::new(Activity {
                execution_state: state.to_owned(),
                last_activity: Utc::now(),
                idle_since: now,
                connections: 0,
                warned: None,
            }),
            subscribers: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            message_limits,
            busy_parent: Mutex::new(bytes::Bytes::from_static(b"{}")),
            grant: Mutex::new(None),
            restrictions,
            folder: Mutex::new(None),
            retired: watch::Sender::new(false),
            died: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn grant(&self) -> Option<Grant> {
        self.grant.lock().clone()
    }

    pub(crate) fn set_grant(&self, grant: Option<Grant>) {
        *self.grant.lock() = grant;
    }

    /// Whether the kernel holds GPUs.
    pub fn has_gpus(&self) -> bool {
        self.grant().is_some_and(|g| !g.devices.is_empty())
    }

    pub fn message_limits(&self) -> MessageLimits {
        self.message_limits
    }

    pub fn owner(&self) -> String {
        self.owner.clone()
    }

    pub fn visible_to(&self, user: &User) -> bool {
        user.is_admin() || self.owner == user.name
    }

    pub fn endpoint(&self) -> watch::Receiver<Endpoint> {
        self.endpoint.subscribe()
    }

    /// Where the kernel is now.
    pub fn current_endpoint(&self) -> Endpoint {
        self.endpoint.borrow().clone()
    }

    pub(crate) fn replace_endpoint(&self, endpoint: Endpoint) {
        self.died.store(false, std::sync::atomic::Ordering::SeqCst);
        self.endpoint.send_replace(endpoint);
    }

    /// The supervisor saw the process gone.
    pub(crate) fn mark_died(&self) {
        self.died.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the supervisor saw the process gone (since its last start).
    pub fn has_died(&self) -> bool {
        self.died.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A new subscription to this kernel's iopub messages.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::channel(FANOUT);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subscribers.lock().push(Subscriber {
            tx,
            dropped: dropped.clone(),
        });
        Subscription { rx, dropped }
    }

    /// Hands a message to every subscriber. Subscribers are session pumps that
    /// never wait on a client, so this waits for room rather than drop a status
    /// message; one stuck for a second loses the message and is told later.
    pub(crate) async fn publish(&self, msg: Arc<RawMessage>) {
        let subs: Vec<(mpsc::Sender<Arc<RawMessage>>, Arc<AtomicU64>)> = self
            .subscribers
            .lock()
            .iter()
            .map(|s| (s.tx.clone(), s.dropped.clone()))
            .collect();
        let mut closed = false;
        for (tx, dropped) in subs {
            match tx.send_timeout(msg.clone(), Duration::from_secs(1)).await {
                Ok(()) => {}
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => closed = true,
            }
        }
        if closed {
            self.subscribers.lock().retain(|s| !s.tx.is_closed());
        }
    }

    /// Tells every client that a message from the kernel was over its
    /// channel's limit and dropped, on stderr under the current request.
    pub async fn report_oversized(&self, channel: Channel, what: Oversized) {
        tracing::warn!(kernel_id = %self.id, channel = channel.as_str(), size = what.size, limit = what.limit, "dropped an oversized message from a kernel");
        let mut msg = RawMessage::new_in_session(
            "stream",
            &self.id.to_string(),
            json!({"name": "stderr", "text": what.notice(channel)}),
        );
        msg.parent_header = self.busy_parent.lock().clone();
        self.publish(Arc::new(msg)).await;
    }

    /// Notes the state a kernel's own status message announced.
    pub(crate) fn observe_status(&self, state: &str, parent: &bytes::Bytes) {
        if state == "busy" {
            *self.busy_parent.lock() = parent.clone();
        }
        self.set_state(state);
    }

    /// The Jupyter model of the kernel (`GET /api/kernels/{id}`).
    pub fn model(&self) -> Value {
        let grant = self.grant();
        let a = self.activity.lock();
        json!({
            "id": self.id.to_string(),
            "name": self.spec,
            "last_activity": crate::timefmt::iso(a.last_activity),
            "execution_state": a.execution_state,
            "connections": a.connections,
            "resources": resources_model(grant.as_ref()),
        })
    }

    /// Tells every client something that is not the kernel's own output.
    pub async fn notify(&self, kind: NoticeKind, text: &str, seconds_left: u64) {
        let msg = notice(&self.id.to_string(), kind, text, seconds_left);
        self.publish(Arc::new(msg)).await;
    }

    pub fn execution_state(&self) -> String {
        self.activity.lock().execution_state.clone()
    }

    pub(crate) fn set_state(&self, state: &str) {
        let mut a = self.activity.lock();
        a.execution_state = state.to_owned();
        a.last_activity = Utc::now();
        a.idle_since = Instant::now();
    }

    pub fn touch(&self) {
        let mut a = self.activity.lock();
        a.last_activity = Utc::now();
        a.idle_since = Instant::now();
    }

    pub fn connection_opened(&self) {
        self.activity.lock().connections += 1;
    }

    pub fn connection_closed(&self) {
        let mut a = self.activity.lock();
        a.connections = a.connections.saturating_sub(1);
    }

    pub fn connections(&self) -> usize {
        self.activity.lock().connections
    }

    /// What the culler needs to know, read at once.
    pub(crate) fn activity(&self) -> ActivityView {
        let has_gpus = self.has_gpus();
        let a = self.activity.lock();
        ActivityView {
            state: a.execution_state.clone(),
            idle_for: a.idle_since.elapsed(),
            age: self.started.elapsed(),
            connections: a.connections,
            has_gpus,
            warned: a.warned,
        }
    }

    pub(crate) fn set_warned(&self, at: Option<Instant>) {
        self.activity.lock().warned = at;
    }

    /// Keeps a task that lives as long as this process of the kernel.
    pub(crate) fn keep_task(&self, task: tokio::task::AbortHandle) {
        self.tasks.lock().push(task);
    }

    pub(crate) fn stop_tasks(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Tells every client the kernel's state, as a kernel's own status message would.
    pub(crate) async fn announce(&self, state: &str) {
        let msg = RawMessage::new_in_session(
            "status",
            &self.id.to_string(),
            json!({"execution_state": state}),
        );
        self.publish(Arc::new(msg)).await;
    }

    /// Marks the kernel as shut down for good.
    pub(crate) fn retire(&self) {
        self.retired.send_replace(true);
    }

    /// Whether the kernel is shut down for good.
    pub fn is_retired(&self) -> bool {
        *self.retired.borrow()
    }

    /// Resolves once the kernel is shut down for good, or dropped; holds no
    /// reference to it meanwhile.
    pub fn retirement(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.retired.subscribe();
        async move {
            // An error means the kernel is gone, which is the same news.
            let _retired_or_gone = rx.wait_for(|r| *r).await;
        }
    }
}

/// The `resources` field of a kernel model.
pub(crate) fn resources_model(grant: Option<&Grant>) -> Value {
    match grant {
        Some(g) if !g.devices.is_empty() => json!({
            "gpus": g.devices.len(),
            "gpu_model": g.model,
            "devices": g.devices,
            "node": g.node,
            "real": g.real,
            "borrowed": g.borrowed,
        }),
        _ => json!({"gpus": 0}),
    }
}

impl Kernel {
    pub(crate) fn set_folder(&self, folder: Option<std::path::PathBuf>) {
        *self.folder.lock() = folder;
    }

    /// The folder it started in, when not its owner's own.
    pub fn folder(&self) -> Option<std::path::PathBuf> {
        self.folder.lock().clone()
    }
}
