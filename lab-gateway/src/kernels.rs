//! Running kernels: start, list, interrupt, restart, shut down, watch.
//!
//! Each kernel has one iopub subscriber in the gateway, whose messages fan out
//! to every websocket session of that kernel through its own bounded queue, and a
//! monitor that notices a dead process within 250 ms and tells the clients.
//! Kernels belong to a user; callers check ownership before acting.
//!
//! A start is first decided by admission ([`crate::scheduling`]): a kernel
//! that must wait for a GPU is a [`Queued`] entry, listed with its position,
//! until admission hands it its GPUs and it is launched under the same id.
//! A background task applies admission's events (launch the admitted, warn
//! and stop reclaimed kernels) and culls idle kernels.
//!
//! A kernel that runs is always recorded in the store: one whose record
//! cannot be written is stopped before its GPUs go back to admission. The
//! gateway pings each kernel's heartbeat well inside its orphan window
//! (`ACADEMY_ORPHAN_TIMEOUT`), so an academy kernel whose gateway is gone
//! for longer ends itself.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jupyter_protocol::ConnectionInfo;
use launch::launcher::KernelSignal;
use launch::{KernelLocator, LaunchSpec, Launcher};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use zeromq::{SocketRecv, SocketSend};

use crate::error::ApiError;
use crate::kernel_client::{self, MessageLimits};
use crate::kernelspecs::Specs;
use crate::scheduling::{Scheduling, now_ms};
use crate::store::{KernelRow, Store, User};
use crate::wire::{Channel, RawMessage, Signer};
use scheduler::admission::{Decision, Event, Grant, Request, Ticket};

/// iopub messages a subscriber may fall behind before it is told some were dropped.
/// Each subscriber has its own queue, freed as it reads: no ring of old messages
/// stays alive, however large they were.
const FANOUT: usize = 4096;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long an academy kernel lives on without hearing from its gateway.
pub const DEFAULT_ORPHAN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How often the gateway pings a kernel's heartbeat: well inside its orphan
/// window, so the kernel of a live gateway never takes itself for an orphan.
fn heartbeat_interval(window: Duration) -> Duration {
    (window / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Pings a kernel's heartbeat every `every`, which tells an academy kernel
/// that its gateway is alive; a lost pong reconnects.
async fn ping_heartbeat(connection: ConnectionInfo, every: Duration) {
    let mut hb = None;
    loop {
        if hb.is_none() {
            hb = tokio::time::timeout(every, kernel_client::heartbeat(&connection))
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some(socket) = hb.as_mut()
            && !matches!(
                tokio::time::timeout(every, kernel_client::ping(socket)).await,
                Ok(Ok(()))
            )
        {
            hb = None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The mimetype of the gateway's own notices (a coming cull or reclaim),
/// which our UI shows as a banner. Only the gateway may send it.
pub const NOTICE_MIMETYPE: &str = "application/vnd.academy.notice+json";

/// Takes [`NOTICE_MIMETYPE`] out of a kernel's own output, so that code in a
/// cell cannot dress its output up as a gateway warning (a fake "your kernel
/// is being reclaimed, log in again here"). The rest of the bundle stays.
/// Returns whether anything was taken out.
fn strip_forged_notice(msg: &mut RawMessage) -> bool {
    #[derive(serde::Deserialize)]
    struct Bundle<'a> {
        #[serde(borrow, default)]
        data: HashMap<std::borrow::Cow<'a, str>, serde::de::IgnoredAny>,
    }
    // A scan of the keys only; escapes in a key are decoded, so an escaped
    // spelling of the mimetype is caught too. Content of another shape (a
    // repeated "data", which a browser reads as its last) is looked at whole.
    if let Ok(b) = serde_json::from_slice::<Bundle>(&msg.content)
        && !b.data.contains_key(NOTICE_MIMETYPE)
    {
        return false;
    }
    // Content that is not JSON at all reaches no client as a notice either.
    let Ok(mut content) = serde_json::from_slice::<Value>(&msg.content) else {
        return false;
    };
    let removed = content
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .and_then(|data| data.remove(NOTICE_MIMETYPE))
        .is_some();
    if !removed {
        return false;
    }
    match serde_json::to_vec(&content) {
        Ok(bytes) => {
            msg.content = bytes.into();
            true
        }
        Err(_) => false,
    }
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

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
    last_activity: DateTime<Utc>,
    connections: usize,
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
    /// Empty while the kernel waits in the warm pool.
    owner: Mutex<String>,
    pub spec: String,
    pub created: DateTime<Utc>,
    interrupt_by_message: bool,
    endpoint: watch::Sender<Endpoint>,
    activity: Mutex<Activity>,
    subscribers: Mutex<Vec<Subscriber>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    limits: crate::ws::RateLimits,
    message_limits: MessageLimits,
    /// The parent header of the request the kernel is busy with: oversized
    /// output the gateway drops is reported under it.
    busy_parent: Mutex<bytes::Bytes>,
    /// Websocket sessions by session_id (see `ws`), which outlive a websocket.
    pub channel_sessions: Mutex<HashMap<String, Arc<crate::ws::ChannelSession>>>,
    /// The shared DEALERs every session's requests go through (see `ws::Mux`).
    pub mux: tokio::sync::Mutex<Option<Arc<crate::ws::Mux>>>,
    /// The GPUs admission gave it (none for a CPU kernel).
    grant: Mutex<Option<Grant>>,
    /// When its clients were warned that it will be culled or reclaimed.
    warned: Mutex<Option<std::time::Instant>>,
}

impl Kernel {
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: uuid::Uuid,
        owner: String,
        spec: String,
        created: DateTime<Utc>,
        interrupt_by_message: bool,
        endpoint: Endpoint,
        state: &str,
        limits: crate::ws::RateLimits,
        message_limits: MessageLimits,
    ) -> Arc<Kernel> {
        Arc::new(Kernel {
            id,
            owner: Mutex::new(owner),
            spec,
            created,
            interrupt_by_message,
            endpoint: watch::Sender::new(endpoint),
            activity: Mutex::new(Activity {
                execution_state: state.to_owned(),
                last_activity: Utc::now(),
                connections: 0,
            }),
            subscribers: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            channel_sessions: Mutex::new(HashMap::new()),
            mux: tokio::sync::Mutex::new(None),
            limits,
            message_limits,
            busy_parent: Mutex::new(bytes::Bytes::from_static(b"{}")),
            grant: Mutex::new(None),
            warned: Mutex::new(None),
        })
    }

    pub fn grant(&self) -> Option<Grant> {
        self.grant.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_grant(&self, grant: Option<Grant>) {
        *self.grant.lock().unwrap_or_else(|e| e.into_inner()) = grant;
    }

    /// Whether the kernel holds GPUs.
    pub fn has_gpus(&self) -> bool {
        self.grant().is_some_and(|g| !g.devices.is_empty())
    }

    pub fn limits(&self) -> crate::ws::RateLimits {
        self.limits
    }

    pub fn message_limits(&self) -> MessageLimits {
        self.message_limits
    }

    /// Tells every client that a message from the kernel was over its
    /// channel's limit and dropped, on stderr under the current request.
    pub async fn report_oversized(&self, channel: Channel, what: kernel_client::Oversized) {
        tracing::warn!(kernel_id = %self.id, channel = channel.as_str(), size = what.size, limit = what.limit, "dropped an oversized message from a kernel");
        let mut msg = RawMessage::new_in_session(
            "stream",
            &self.id.to_string(),
            json!({"name": "stderr", "text": what.notice(channel)}),
        );
        msg.parent_header = self
            .busy_parent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.publish(Arc::new(msg)).await;
    }

    pub fn owner(&self) -> String {
        self.owner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn visible_to(&self, user: &User) -> bool {
        user.is_admin() || *self.owner.lock().unwrap_or_else(|e| e.into_inner()) == user.name
    }

    pub fn endpoint(&self) -> watch::Receiver<Endpoint> {
        self.endpoint.subscribe()
    }

    /// A new subscription to this kernel's iopub messages.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::channel(FANOUT);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Subscriber {
                tx,
                dropped: dropped.clone(),
            });
        Subscription { rx, dropped }
    }

    /// Hands a message to every subscriber. Subscribers are session pumps that
    /// never wait on a client, so this waits for room rather than drop a status
    /// message; one stuck for a second loses the message and is told later.
    async fn publish(&self, msg: Arc<RawMessage>) {
        let subs: Vec<(mpsc::Sender<Arc<RawMessage>>, Arc<AtomicU64>)> = self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
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
            self.subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|s| !s.tx.is_closed());
        }
    }

    pub fn model(&self) -> Value {
        let grant = self.grant();
        let a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "id": self.id.to_string(),
            "name": self.spec,
            "last_activity": timestamp(a.last_activity),
            "execution_state": a.execution_state,
            "connections": a.connections,
            "resources": resources_model(grant.as_ref()),
        })
    }

    /// Tells every client something that is not the kernel's own output
    /// (a coming cull or reclaim), as an iopub display_data with plain text
    /// for any client and `application/vnd.academy.notice+json` for ours.
    pub async fn notify(&self, kind: &str, text: &str, seconds_left: u64) {
        let msg = RawMessage::new_in_session(
            "display_data",
            &self.id.to_string(),
            json!({
                "data": {
                    "text/plain": text,
                    NOTICE_MIMETYPE: {"kind": kind, "message": text, "seconds_left": seconds_left},
                },
                "metadata": {},
                "transient": {},
            }),
        );
        self.publish(Arc::new(msg)).await;
    }

    pub fn execution_state(&self) -> String {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .execution_state
            .clone()
    }

    fn set_state(&self, state: &str) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.execution_state = state.to_owned();
        a.last_activity = Utc::now();
    }

    pub fn touch(&self) {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_activity = Utc::now();
    }

    pub fn connection_opened(&self) {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connections += 1;
    }

    pub fn connection_closed(&self) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.connections = a.connections.saturating_sub(1);
    }

    fn stop_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Tells every client the kernel's state, as a kernel's own status message would.
    async fn announce(&self, state: &str) {
        let msg = RawMessage::new_in_session(
            "status",
            &self.id.to_string(),
            json!({"execution_state": state}),
        );
        self.publish(Arc::new(msg)).await;
    }
}

/// The `resources` field of a kernel model.
fn resources_model(grant: Option<&Grant>) -> Value {
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

/// Where a queued start stands.
#[derive(Clone)]
pub enum QueueState {
    Waiting,
    Started(Arc<Kernel>),
    /// Refused after queueing, or failed to launch once admitted.
    Failed(String),
    Cancelled,
}

/// A kernel its backend is starting.
#[derive(Debug, Clone)]
struct Launching {
    user: String,
    spec: String,
    created: DateTime<Utc>,
    /// What admission granted it.
    resources: Value,
    /// The backend's latest word on it.
    progress: String,
}

impl Launching {
    fn model(&self, id: uuid::Uuid) -> Value {
        json!({
            "id": id.to_string(),
            "name": self.spec,
            "last_activity": timestamp(self.created),
            "execution_state": "starting",
            "connections": 0,
            "resources": self.resources,
            "launch": {"progress": self.progress},
        })
    }
}

/// A start waiting for GPUs.
pub struct Queued {
    pub id: uuid::Uuid,
    pub user: User,
    pub spec: String,
    pub created: DateTime<Utc>,
    env: BTreeMap<String, String>,
    /// What it asked for, resolved (CPU and memory go to the backend).
    resources: ResourceRequest,
    state: watch::Sender<QueueState>,
}

impl Queued {
    pub fn state(&self) -> QueueState {
        self.state.borrow().clone()
    }

    /// The kernel model of a queued start: `execution_state` "queued" and
    /// its place in the queue.
    pub fn model(&self, ticket: Option<&Ticket>) -> Value {
        let (state, reason) = match self.state() {
            QueueState::Failed(why) => ("dead", Some(why)),
            QueueState::Cancelled => ("dead", Some("cancelled".to_owned())),
            _ => ("queued", None),
        };
        json!({
            "id": self.id.to_string(),
            "name": self.spec,
            "last_activity": timestamp(self.created),
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

    /// Waits until the start leaves the queue, or `timeout` passes.
    pub async fn wait(&self, timeout: Duration) -> QueueState {
        let mut rx = self.state.subscribe();
        let _ =
            tokio::time::timeout(timeout, rx.wait_for(|s| !matches!(s, QueueState::Waiting))).await;
        self.state()
    }
}

/// What a start request led to.
pub enum Started {
    Running(Arc<Kernel>),
    Queued(Arc<Queued>),
}

/// GPUs and CPUs a kernel asks for.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    pub gpus: Option<u32>,
    pub gpu_model: Option<String>,
    /// `cpu` as kernelspecs and Kubernetes spell it.
    #[serde(alias = "cpu")]
    pub cpus: Option<f64>,
    /// Memory, as Kubernetes spells it (`8Gi`); used by pod backends.
    pub memory: Option<String>,
}

/// The number in the start request's variable `name`, if it is set.
fn env_number<T: std::str::FromStr>(
    env: &BTreeMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    env.get(name)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| ApiError::BadRequest(format!("{name} must be {what}, not {v:?}")))
        })
        .transpose()
}

/// A memory size as Kubernetes spells it: digits, then an optional
/// suffix (`512Mi`, `8Gi`, `1G`, `1500000000`).
fn is_quantity(m: &str) -> bool {
    let digits = m.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &m[digits.len()..];
    !digits.is_empty()
        && digits.len() <= 18
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "k", "M", "G", "T", "P"].contains(&suffix)
}

impl ResourceRequest {
    /// The grant, with the CPU and memory this request asked for.
    fn sized(&self, grant: Grant) -> Grant {
        Grant {
            cpu: self.cpus.map(|c| c.to_string()),
            memory: self.memory.clone(),
            ..grant
        }
    }
}

/// Idle culling settings; `None` turns a timeout off.
#[derive(Debug, Clone, Copy)]
pub struct CullPolicy {
    pub idle_gpu: Option<Duration>,
    pub idle_cpu: Option<Duration>,
    /// Ends even a busy kernel after this long.
    pub max_runtime: Option<Duration>,
    /// How long clients are warned before the kernel is stopped.
    pub warning: Duration,
    /// Whether kernels with a connected client are culled too.
    pub connected: bool,
}

impl Default for CullPolicy {
    fn default() -> Self {
        CullPolicy {
            idle_gpu: Some(Duration::from_secs(30 * 60)),
            idle_cpu: Some(Duration::from_secs(2 * 3600)),
            max_runtime: None,
            warning: Duration::from_secs(60),
            connected: true,
        }
    }
}

/// Sends one request on a fresh DEALER and waits for its reply.
async fn request(
    conn: &ConnectionInfo,
    channel: Channel,
    msg: RawMessage,
    timeout: Duration,
) -> Option<RawMessage> {
    let signer = Signer::new(&conn.key);
    let msg_id = msg.ids().0.to_owned();
    let identity = format!("lab-gateway-{}", uuid::Uuid::new_v4());
    let mut socket = tokio::time::timeout(
        timeout,
        kernel_client::dealer(
            conn,
            channel,
            identity.as_bytes(),
            kernel_client::GATEWAY_REPLY_LIMIT,
        ),
    )
    .await
    .ok()?
    .ok()?;
    let frames = zeromq::ZmqMessage::try_from(msg.to_frames(&signer)).ok()?;
    socket.send(frames).await.ok()?;
    tokio::time::timeout(timeout, async {
        loop {
            let reply = match socket.recv().await {
                Ok(reply) => reply,
                // Skipped; the reply may still come.
                Err(e) if kernel_client::oversized(&e).is_some() => continue,
                Err(_) => return None,
            };
            if let Ok(m) = RawMessage::from_frames(reply.into_vec(), &signer)
                && m.parent_msg_id().as_deref() == Some(msg_id.as_str())
            {
                return Some(m);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

pub struct KernelManager {
    kernels: RwLock<HashMap<uuid::Uuid, Arc<Kernel>>>,
    /// Prespawned, ready kernels by kernelspec, owned by nobody yet.
    pool: Mutex<HashMap<String, Vec<Arc<Kernel>>>>,
    pool_sizes: BTreeMap<String, usize>,
    /// One fill at a time; none after `shutdown_pool`.
    pool_filling: tokio::sync::Mutex<bool>,
    limits: crate::ws::RateLimits,
    message_limits: MessageLimits,
    metrics: Arc<crate::metrics::Metrics>,
    launcher: Arc<dyn Launcher>,
    specs: Specs,
    store: Store,
    users_root: PathBuf,
    scheduling: Arc<Scheduling>,
    queued: Mutex<HashMap<uuid::Uuid, Arc<Queued>>>,
    /// Kernels whose backend is still starting them, with what it is doing
    /// (a pod waiting for a node, pulling its image): shown as "starting".
    launching: Arc<Mutex<HashMap<uuid::Uuid, Launching>>>,
    /// Reclaims of kernels admitted but not running yet (group, deadline):
    /// carried out as soon as the kernel runs, so a kernel whose launch
    /// outlasts the reclaim never keeps GPUs admission gave back.
    pending_reclaims: Mutex<HashMap<uuid::Uuid, (String, u64)>>,
    events: mpsc::UnboundedSender<Event>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    /// How long a start waits in the queue before answering 202.
    queue_wait: Duration,
    /// With a backend whose starts may be slow: how long a start may take
    /// before it is answered 202 `starting`.
    answer_after: Duration,
    cull: CullPolicy,
    /// Given to every kernel as `ACADEMY_ORPHAN_TIMEOUT`; `None` lets
    /// kernels outlive their gateway for ever.
    orphan_timeout: Option<Duration>,
}

/// What a start request asks for (`POST /api/kernels`).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct StartRequest {
    pub name: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// GPUs and CPUs, beyond the kernelspec's defaults.
    #[serde(default)]
    pub resources: Option<ResourceRequest>,
}

impl KernelManager {
    pub fn new(
        launcher: Arc<dyn Launcher>,
        specs: Specs,
        store: Store,
        users_root: PathBuf,
    ) -> Self {
        let scheduling = Arc::new(
            Scheduling::new(
                scheduler::Cluster::default(),
                store.clone(),
                Default::default(),
                Default::default(),
            )
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "ignoring unreadable stored quotas");
                Scheduling::fresh(scheduler::Cluster::default(), store.clone())
            }),
        );
        let (events, events_rx) = mpsc::unbounded_channel();
        KernelManager {
            scheduling,
            queued: Mutex::new(HashMap::new()),
            launching: Default::default(),
            pending_reclaims: Default::default(),
            events,
            events_rx: Mutex::new(Some(events_rx)),
            queue_wait: Duration::from_secs(2),
            answer_after: Duration::from_secs(20),
            cull: CullPolicy::default(),
            orphan_timeout: Some(DEFAULT_ORPHAN_TIMEOUT),
            kernels: RwLock::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            pool_sizes: BTreeMap::new(),
            pool_filling: tokio::sync::Mutex::new(false),
            limits: Default::default(),
            message_limits: Default::default(),
            metrics: Default::default(),
            launcher,
            specs,
            store,
            users_root,
        }
    }

    /// Keeps `n` ready kernels of each spec, so a start answers at once. Only
    /// kernels that can take on their user's folder after starting qualify:
    /// academy-candle (`:cd`). Others are refused with a warning.
    pub fn with_warm_pool(mut self, sizes: BTreeMap<String, usize>) -> Self {
        for (spec, n) in sizes {
            match self.specs.get(&spec) {
                Some(s) if s.json["language"] == "rhai" => {
                    self.pool_sizes.insert(spec, n);
                }
                _ => {
                    tracing::warn!(%spec, "warm pool: only academy-candle kernels can be prespawned")
                }
            }
        }
        self
    }

    /// How many ready kernels wait in the pool, by spec.
    pub fn pool_counts(&self) -> BTreeMap<String, usize> {
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        self.pool_sizes
            .keys()
            .map(|k| (k.clone(), pool.get(k).map_or(0, Vec::len)))
            .collect()
    }

    /// Starts kernels until every pool is full. Call it in a spawned task.
    pub async fn fill_pool(self: &Arc<Self>) {
        let closed = self.pool_filling.lock().await;
        if *closed {
            return;
        }
        for (spec, want) in &self.pool_sizes {
            loop {
                let have = self
                    .pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(spec)
                    .map_or(0, Vec::len);
                if have >= *want {
                    break;
                }
                let pool_user = User {
                    name: String::new(),
                    role: crate::store::Role::Engineer,
                    group: None,
                };
                match self
                    .launch(
                        uuid::Uuid::new_v4(),
                        &pool_user,
                        spec,
                        &BTreeMap::new(),
                        self.users_root.join(".pool"),
                        None,
                    )
                    .await
                {
                    Ok(k) => self
                        .pool
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(spec.clone())
                        .or_default()
                        .push(k),
                    Err(e) => {
                        tracing::warn!(%spec, error = %e, "warm pool: a prespawn failed");
                        break;
                    }
                }
            }
        }
    }

    /// Stops the pooled kernels (they are not recorded, so a restarted
    /// gateway could not re-attach them).
    pub async fn shutdown_pool(&self) {
        // Waits for a fill in progress, and stops later ones.
        *self.pool_filling.lock().await = true;
        let pooled: Vec<Arc<Kernel>> = self
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        for k in pooled {
            let endpoint = k.endpoint.borrow().clone();
            self.stop_process(&endpoint, false).await;
            k.stop_tasks();
            self.launcher.cleanup(k.id, &endpoint.locator).await;
        }
    }

    /// Hands a pooled kernel of `spec` to `user`, if one is ready.
    async fn adopt(self: &Arc<Self>, user: &User, spec: &str) -> Option<Arc<Kernel>> {
        let kernel = self
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(spec)?
            .pop()?;
        let cwd = self.users_root.join(&user.name);
        if std::fs::create_dir_all(&cwd).is_err() {
            return None;
        }
        let endpoint = kernel.endpoint.borrow().clone();
        let cd = RawMessage::request(
            "execute_request",
            json!({"code": format!(":cd {}", cwd.display()), "silent": true, "store_history": false,
                   "user_expressions": {}, "allow_stdin": false, "stop_on_error": false}),
        );
        let reply = request(
            &endpoint.connection,
            Channel::Shell,
            cd,
            Duration::from_secs(5),
        )
        .await?;
        let ok = serde_json::from_slice::<Value>(&reply.content).is_ok_and(|c| c["status"] == "ok");
        if !ok {
            self.kill(&kernel).await;
            return None;
        }
        *kernel.owner.lock().unwrap_or_else(|e| e.into_inner()) = user.name.clone();
        let me = self.clone();
        tokio::spawn(async move { me.fill_pool().await });
        Some(kernel)
    }

    /// Decides starts with `scheduling` (the GPU inventory and quotas).
    pub fn with_scheduling(mut self, scheduling: Arc<Scheduling>) -> Self {
        self.scheduling = scheduling;
        self
    }

    /// How long a start that must queue waits for a GPU before answering
    /// 202 with its queue position.
    pub fn with_queue_wait(mut self, wait: Duration) -> Self {
        self.queue_wait = wait;
        self
    }

    /// How long a slow backend's start may take before it is answered 202.
    pub fn with_answer_after(mut self, after: Duration) -> Self {
        self.answer_after = after;
        self
    }

    pub fn with_cull(mut self, cull: CullPolicy) -> Self {
        self.cull = cull;
        self
    }

    /// How long an academy kernel outlives a gateway it no longer hears
    /// from (`None`: for ever).
    pub fn with_orphan_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.orphan_timeout = timeout;
        self
    }

    pub fn scheduling(&self) -> &Arc<Scheduling> {
        &self.scheduling
    }

    /// Sets the iopub output limits of kernels started from now on.
    pub fn with_limits(mut self, limits: crate::ws::RateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the most bytes a message from a kernel may hold, per channel.
    pub fn with_message_limits(mut self, limits: MessageLimits) -> Self {
        self.message_limits = limits;
        self
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Whether the backend can start kernels now (`/readyz`).
    pub async fn launcher_ready(&self) -> Result<(), String> {
        self.launcher.ready().await
    }

    pub fn specs(&self) -> &Specs {
        &self.specs
    }

    /// The kernel, if it exists and `user` may see it; else 404.
    pub fn get_for(&self, user: &User, id: &str) -> Result<Arc<Kernel>, ApiError> {
        let parsed: uuid::Uuid = id.parse().map_err(|_| ApiError::kernel_not_found(id))?;
        let kernels = self.kernels.read().unwrap_or_else(|e| e.into_inner());
        match kernels.get(&parsed) {
            Some(k) if k.visible_to(user) => Ok(k.clone()),
            _ => Err(ApiError::kernel_not_found(id)),
        }
    }

    /// A queued start, if it exists and `user` may see it.
    pub fn queued_for(&self, user: &User, id: &str) -> Option<Arc<Queued>> {
        let parsed: uuid::Uuid = id.parse().ok()?;
        self.queued_entry(parsed)
            .filter(|q| user.is_admin() || q.user.name == user.name)
    }

    /// The models of `user`'s queued starts, with their positions.
    pub fn queued_models_for(&self, user: &User) -> Vec<Value> {
        let mut queued: Vec<Arc<Queued>> = self
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|q| user.is_admin() || q.user.name == user.name)
            .cloned()
            .collect();
        queued.sort_by_key(|q| q.created);
        queued.iter().map(|q| self.queued_model(q)).collect()
    }

    /// A queued start's model, or, once admitted and launching, the
    /// launch's (`starting`, with its progress).
    fn queued_model(&self, q: &Queued) -> Value {
        match self.scheduling.ticket(q.id, now_ms()) {
            None if matches!(q.state(), QueueState::Waiting) => {
                let launching = self.launching.lock().unwrap_or_else(|e| e.into_inner());
                match launching.get(&q.id) {
                    Some(l) => l.model(q.id),
                    None => q.model(None),
                }
            }
            ticket => q.model(ticket.as_ref()),
        }
    }

    /// The models of `user`'s kernels that their backend is still starting.
    pub fn launching_models_for(&self, user: &User) -> Vec<Value> {
        // A start tracked as queued is listed with the queued ones.
        let queued: std::collections::HashSet<uuid::Uuid> = self
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        let launching = self.launching.lock().unwrap_or_else(|e| e.into_inner());
        let mut mine: Vec<(&uuid::Uuid, &Launching)> = launching
            .iter()
            .filter(|(id, _)| !queued.contains(id))
            .filter(|(_, l)| user.is_admin() || l.user == user.name)
            .collect();
        mine.sort_by_key(|(_, l)| l.created);
        mine.into_iter().map(|(id, l)| l.model(*id)).collect()
    }

    /// The model of a running, starting or queued kernel.
    pub fn model_for(&self, user: &User, id: &str) -> Result<Value, ApiError> {
        if let Some(q) = self.queued_for(user, id) {
            return Ok(self.queued_model(&q));
        }
        if let Ok(parsed) = id.parse::<uuid::Uuid>()
            && let Some(l) = self
                .launching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&parsed)
                .filter(|l| user.is_admin() || l.user == user.name)
        {
            return Ok(l.model(parsed));
        }
        Ok(self.get_for(user, id)?.model())
    }

    /// The kernel, waiting while it is queued (a websocket opened on a
    /// queued kernel connects once it runs).
    pub async fn get_or_wait_for(&self, user: &User, id: &str) -> Result<Arc<Kernel>, ApiError> {
        if let Some(q) = self.queued_for(user, id) {
            return match q.wait(Duration::from_secs(24 * 3600)).await {
                QueueState::Started(k) => Ok(k),
                QueueState::Failed(why) => Err(ApiError::Conflict(why)),
                QueueState::Cancelled | QueueState::Waiting => Err(ApiError::kernel_not_found(id)),
            };
        }
        self.get_for(user, id)
    }

    /// Cancels a queued start.
    pub fn cancel(self: &Arc<Self>, queued: &Queued) {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&queued.id);
        self.forget_queued(queued.id);
        queued.state.send_replace(QueueState::Cancelled);
        self.release(queued.id);
    }

    pub fn list_for(&self, user: &User) -> Vec<Arc<Kernel>> {
        let kernels = self.kernels.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = kernels
            .values()
            .filter(|k| k.visible_to(user))
            .cloned()
            .collect();
        v.sort_by_key(|k| k.created);
        v
    }

    pub fn all(&self) -> Vec<Arc<Kernel>> {
        self.kernels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn launch_spec(
        &self,
        id: uuid::Uuid,
        user: &str,
        spec_name: &str,
        extra: &BTreeMap<String, String>,
        grant: Option<&Grant>,
    ) -> Result<LaunchSpec, ApiError> {
        let spec = self
            .specs
            .get(spec_name)
            .ok_or_else(|| ApiError::NotFound(format!("No such kernel spec: {spec_name}")))?;
        let mut env = spec.env();
        // Like Kernel Gateway, a client may pass KERNEL_* variables only.
        env.extend(
            extra
                .iter()
                .filter(|(k, _)| k.starts_with("KERNEL_"))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        env.insert("KERNEL_USERNAME".into(), user.to_owned());
        env.insert("KERNEL_ID".into(), id.to_string());
        if let Some(window) = self.orphan_timeout {
            env.insert(
                "ACADEMY_ORPHAN_TIMEOUT".into(),
                window.as_secs_f64().to_string(),
            );
        }
        let mut gpus = Vec::new();
        if let Some(g) = grant.filter(|g| !g.devices.is_empty()) {
            gpus = g.devices.clone();
            if let Some(m) = &g.model {
                env.insert("ACADEMY_GPU_MODEL".into(), m.clone());
            }
            if !g.real {
                // Modelled GPUs: accounted like real ones, but the kernel runs on CPU.
                env.insert("ACADEMY_VIRTUAL_GPU".into(), "1".into());
            }
        }
        let group = self.store.user(user).ok().flatten().and_then(|u| u.group);
        Ok(LaunchSpec {
            kernel_id: id,
            argv: spec.argv(),
            env,
            cwd: self.users_root.join(user),
            gpus,
            user: user.to_owned(),
            group,
            gpu_model: grant.and_then(|g| g.model.clone()),
            cpu: grant.and_then(|g| g.cpu.clone()),
            memory: grant.and_then(|g| g.memory.clone()),
            progress: None,
        })
    }

    /// What a start asks for: the request's resources, else `KERNEL_GPUS`
    /// and `KERNEL_GPU_MODEL` (as Enterprise Gateway reads them), else the
    /// kernelspec's `metadata.academy.resources` (or `metadata.resources`).
    /// A kernelspec's GPUs are a default, not a demand: in a lab without
    /// GPUs its kernels run on CPU.
    fn resources(&self, spec_name: &str, req: &StartRequest) -> Result<ResourceRequest, ApiError> {
        let spec = self.specs.get(spec_name);
        let declared = spec
            .map(|s| {
                let m = &s.json["metadata"];
                if m["academy"]["resources"].is_null() {
                    m["resources"].clone()
                } else {
                    m["academy"]["resources"].clone()
                }
            })
            .filter(|v| !v.is_null())
            .map(serde_json::from_value::<ResourceRequest>)
            .transpose()
            .map_err(|e| {
                ApiError::Internal(format!(
                    "kernelspec {spec_name} declares invalid resources: {e}"
                ))
            })?
            .unwrap_or_default();
        // Enterprise Gateway's names for a pod's GPUs, CPU and memory.
        let env_gpus = env_number::<u32>(&req.env, "KERNEL_GPUS", "a GPU count")?;
        let env_cpus = env_number::<f64>(&req.env, "KERNEL_CPUS", "a CPU count")?;
        let env_memory = req.env.get("KERNEL_MEMORY").map(|m| m.trim().to_owned());
        let body = req.resources.clone().unwrap_or_default();
        let cpus = body.cpus.or(env_cpus).or(declared.cpus);
        if cpus.is_some_and(|c| !(c.is_finite() && c > 0.0 && c <= 1024.0)) {
            return Err(ApiError::BadRequest(
                "resources.cpus must be a positive CPU count".into(),
            ));
        }
        let memory = body.memory.or(env_memory).or(declared.memory);
        if let Some(m) = memory.as_deref().filter(|m| !is_quantity(m)) {
            return Err(ApiError::BadRequest(format!(
                "resources.memory must be a size such as 512Mi or 8Gi, not {m:?}"
            )));
        }
        let lab_has_gpus = !self.scheduling.cluster().pools.is_empty();
        Ok(ResourceRequest {
            gpus: body
                .gpus
                .or(env_gpus)
                .or(declared.gpus.filter(|_| lab_has_gpus)),
            gpu_model: body
                .gpu_model
                .or_else(|| req.env.get("KERNEL_GPU_MODEL").cloned())
                .or(declared.gpu_model)
                .filter(|m| !m.is_empty()),
            cpus,
            memory,
        })
    }

    /// Starts a kernel: admitted at once and launched, or queued for a GPU
    /// (answered after `queue_wait` with its position), or refused.
    pub async fn start(
        self: &Arc<Self>,
        user: &User,
        req: StartRequest,
    ) -> Result<Started, ApiError> {
        self.start_as(uuid::Uuid::new_v4(), user, req, self.queue_wait)
            .await
    }

    /// Queues again the starts that waited when the gateway stopped, oldest
    /// first and under the same ids, so their clients find them.
    pub async fn requeue(self: &Arc<Self>) {
        let rows = match self.store.queued() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the queued starts");
                return;
            }
        };
        for row in rows {
            let user = self.store.user(&row.owner).ok().flatten();
            let req = serde_json::from_str::<StartRequest>(&row.request).ok();
            let (Some(user), Some(req)) = (user, req) else {
                let _ = self.store.delete_queued(row.id);
                continue;
            };
            match self.start_as(row.id, &user, req, Duration::ZERO).await {
                Ok(_) => {
                    tracing::info!(kernel_id = %row.id, user = %user.name, "queued start restored")
                }
                Err(e) => {
                    tracing::warn!(kernel_id = %row.id, error = %e, "a queued start could not be restored");
                    let _ = self.store.delete_queued(row.id);
                }
            }
        }
    }

    async fn start_as(
        self: &Arc<Self>,
        id: uuid::Uuid,
        user: &User,
        req: StartRequest,
        queue_wait: Duration,
    ) -> Result<Started, ApiError> {
        let spec_name = req
            .name
            .clone()
            .or_else(|| self.specs.default_name().map(str::to_owned))
            .ok_or_else(|| ApiError::NotFound("no kernelspecs are installed".into()))?;
        if self.specs.get(&spec_name).is_none() {
            return Err(ApiError::NotFound(format!(
                "No such kernel spec: {spec_name}"
            )));
        }
        let resources = self.resources(&spec_name, &req)?;
        let request = Request {
            kernel: id,
            user: user.name.clone(),
            group: user.group.clone(),
            gpus: resources.gpus.unwrap_or(0),
            model: resources.gpu_model.clone(),
            role_max_gpus: self.scheduling.roles.for_role(user.role),
        };
        let (decision, events) =
            self.scheduling
                .request(request, &spec_name, resources.cpus.unwrap_or(1.0), now_ms());
        self.handle(events);
        match decision {
            Decision::Refused(refusal) => Err(ApiError::Refused(refusal)),
            Decision::Admitted(grant) => {
                // The launch goes on in its own task, tracked like a queued
                // start: a pod may wait minutes for a node or an image, and a
                // client that gives up (or times out) must not abort a launch
                // half way and leave its process and GPUs behind. The client
                // is answered within `answer_after`: 201 with the kernel, or
                // 202 `starting` with what the launch is doing.
                let starting = self.track(id, user, spec_name, req.env, resources);
                let me = self.clone();
                let q = starting.clone();
                tokio::spawn(async move { me.launch_queued(q, grant).await });
                match starting.wait(self.answer_after).await {
                    QueueState::Started(k) => Ok(Started::Running(k)),
                    QueueState::Failed(why) => Err(ApiError::Unavailable(why)),
                    _ => Ok(Started::Queued(starting)),
                }
            }
            Decision::Queued(ticket) => {
                tracing::info!(kernel_id = %id, user = %user.name, position = ticket.position,
                    waiting_for = %ticket.waiting_for, "kernel queued");
                // Kept, so a restarted gateway queues it again.
                let row = crate::store::QueuedRow {
                    id,
                    owner: user.name.clone(),
                    request: serde_json::to_string(&StartRequest {
                        name: Some(spec_name.clone()),
                        ..req.clone()
                    })
                    .unwrap_or_default(),
                };
                if let Err(e) = self.store.save_queued(&row) {
                    tracing::warn!(kernel_id = %id, error = %e, "cannot record a queued start");
                }
                let queued = self.track(id, user, spec_name, req.env, resources);
                // It may have been admitted (and even launched) meanwhile.
                match queued.wait(queue_wait).await {
                    QueueState::Started(k) => Ok(Started::Running(k)),
                    _ => Ok(Started::Queued(queued)),
                }
            }
        }
    }

    /// Starts a kernel and waits for it through the queue (sessions, which
    /// must answer with a running kernel).
    pub async fn start_running(
        self: &Arc<Self>,
        user: &User,
        req: StartRequest,
    ) -> Result<Arc<Kernel>, ApiError> {
        match self.start(user, req).await? {
            Started::Running(k) => Ok(k),
            Started::Queued(q) => match q.wait(READY_TIMEOUT).await {
                QueueState::Started(k) => Ok(k),
                QueueState::Failed(why) => Err(ApiError::Unavailable(why)),
                _ => {
                    let position = self
                        .scheduling
                        .ticket(q.id, now_ms())
                        .map_or(0, |t| t.position);
                    Err(ApiError::Unavailable(format!(
                        "kernel {} is queued for a GPU at position {position}; GET /api/kernels/{} shows when it starts",
                        q.id, q.id
                    )))
                }
            },
        }
    }

    /// Launches an admitted kernel (from the warm pool when it needs no GPU)
    /// and records it.
    async fn start_admitted(
        self: &Arc<Self>,
        id: uuid::Uuid,
        user: &User,
        spec_name: &str,
        env: &BTreeMap<String, String>,
        grant: Grant,
    ) -> Result<Arc<Kernel>, ApiError> {
        let pooled = if env.is_empty() && grant.devices.is_empty() {
            self.adopt(user, spec_name).await
        } else {
            None
        };
        let kernel = match pooled {
            Some(k) => {
                // The pooled kernel has its own id; admission knows this start's id.
                self.release(id);
                let request = Request {
                    kernel: k.id,
                    user: user.name.clone(),
                    group: user.group.clone(),
                    gpus: 0,
                    model: None,
                    role_max_gpus: scheduler::Amount::Unlimited,
                };
                let (_, events) = self.scheduling.request(request, spec_name, 1.0, now_ms());
                self.handle(events);
                k
            }
            None => {
                self.launch(
                    id,
                    user,
                    spec_name,
                    env,
                    self.users_root.join(&user.name),
                    Some(&grant),
                )
                .await?
            }
        };
        kernel.set_grant(Some(grant));
        let endpoint = kernel.endpoint.borrow().clone();
        let saved = self.store.save_kernel(&KernelRow {
            id: kernel.id,
            owner: user.name.clone(),
            spec: spec_name.to_owned(),
            connection: serde_json::to_string(&endpoint.connection).unwrap_or_default(),
            locator: serde_json::to_string(&endpoint.locator).unwrap_or_default(),
            created: timestamp(kernel.created),
            resources: kernel
                .grant()
                .and_then(|g| serde_json::to_string(&g).ok())
                .unwrap_or_default(),
        });
        if let Err(e) = saved {
            return Err(self.stop_unrecorded(&kernel, id, e).await);
        }
        self.kernels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kernel.id, kernel.clone());
        // A reclaim that came while it launched applies now (see `reclaim`).
        let pending = self
            .pending_reclaims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&kernel.id);
        if let Some((group, deadline)) = pending {
            let (me, kernel_id) = (self.clone(), kernel.id);
            tokio::spawn(async move { me.reclaim(kernel_id, &group, deadline).await });
        }
        Ok(kernel)
    }

    /// Stops a kernel that runs but could not be recorded: unrecorded, a
    /// restarted gateway would never see it, and it would keep GPUs that
    /// admission hands on. Returns once the process is gone (or after a
    /// SIGKILL and 10 s); the caller then releases the start's GPUs. A
    /// pooled kernel, admitted under its own id, is released here.
    async fn stop_unrecorded(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
        start_id: uuid::Uuid,
        error: crate::store::StoreError,
    ) -> ApiError {
        tracing::error!(kernel_id = %kernel.id, error = %error, "cannot record a started kernel; stopping it");
        let endpoint = kernel.endpoint.borrow().clone();
        self.stop_process(&endpoint, false).await;
        kernel.stop_tasks();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.launcher.is_alive(&endpoint.locator).await {
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(kernel_id = %kernel.id, "an unrecorded kernel outlived SIGKILL");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.launcher.cleanup(kernel.id, &endpoint.locator).await;
        if kernel.id != start_id {
            self.release(kernel.id);
        }
        ApiError::Unavailable(format!(
            "the kernel started but could not be recorded, so it was stopped: {error}"
        ))
    }

    /// Stops every running kernel (a clean stop of a local gateway), at
    /// once; returns how many. Queued starts stay recorded and queue again.
    pub async fn shutdown_all(&self) -> usize {
        let kernels = self.all();
        futures_util::future::join_all(kernels.iter().map(|k| async move {
            if let Err(e) = self.shutdown(k).await {
                tracing::warn!(kernel_id = %k.id, error = %e, "cannot stop a kernel");
            }
        }))
        .await;
        kernels.len()
    }

    /// Acts on admission's events. Never blocks: launches and stops run in
    /// their own tasks.
    pub fn handle(self: &Arc<Self>, events: Vec<Event>) {
        for event in events {
            let me = self.clone();
            match event {
                Event::Admitted { kernel, grant } => {
                    match self.queued_entry(kernel) {
                        Some(q) => {
                            tokio::spawn(async move { me.launch_queued(q, grant).await });
                        }
                        // Admitted before `start` made its entry (it is about to), or
                        // just cancelled: wait briefly, else give the GPUs back.
                        None => {
                            tokio::spawn(
                                async move { me.admitted_without_entry(kernel, grant).await },
                            );
                        }
                    }
                }
                Event::Reclaim {
                    kernel,
                    for_group,
                    deadline,
                } => {
                    tokio::spawn(async move { me.reclaim(kernel, &for_group, deadline).await });
                }
                Event::Refused { kernel, refusal } => {
                    self.forget_queued(kernel);
                    if let Some(q) = self.queued_entry(kernel) {
                        q.state.send_replace(QueueState::Failed(refusal.message));
                    }
                }
            }
        }
    }

    /// Gives a kernel's GPUs back to admission (a start that failed or was
    /// cancelled) and acts on what that lets start.
    fn release(self: &Arc<Self>, kernel: uuid::Uuid) {
        self.pending_reclaims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&kernel);
        let events = self.scheduling.release(kernel, now_ms());
        self.handle(events);
    }

    /// A start the client is answered before it runs (queued for a GPU, or
    /// a slow launch): GET shows it, a websocket waits for it, DELETE cancels it.
    fn track(
        &self,
        id: uuid::Uuid,
        user: &User,
        spec: String,
        env: BTreeMap<String, String>,
        resources: ResourceRequest,
    ) -> Arc<Queued> {
        let q = Arc::new(Queued {
            id,
            user: user.clone(),
            spec,
            created: Utc::now(),
            env,
            resources,
            state: watch::Sender::new(QueueState::Waiting),
        });
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, q.clone());
        q
    }

    /// Drops a start's record once it left the queue.
    fn forget_queued(&self, kernel: uuid::Uuid) {
        if let Err(e) = self.store.delete_queued(kernel) {
            tracing::warn!(kernel_id = %kernel, error = %e, "cannot forget a queued start");
        }
    }

    fn queued_entry(&self, kernel: uuid::Uuid) -> Option<Arc<Queued>> {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&kernel)
            .cloned()
    }

    async fn admitted_without_entry(self: Arc<Self>, kernel: uuid::Uuid, grant: Grant) {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(q) = self.queued_entry(kernel) {
                return self.launch_queued(q, grant).await;
            }
        }
        tracing::info!(kernel_id = %kernel, "admitted after it was cancelled; releasing its GPUs");
        self.release(kernel);
    }

    async fn launch_queued(self: Arc<Self>, q: Arc<Queued>, grant: Grant) {
        tracing::info!(kernel_id = %q.id, devices = ?grant.devices, "queued kernel admitted");
        let result = self
            .start_admitted(q.id, &q.user, &q.spec, &q.env, q.resources.sized(grant))
            .await;
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&q.id);
        self.forget_queued(q.id);
        match result {
            Ok(k) if matches!(q.state(), QueueState::Cancelled) => {
                tracing::info!(kernel_id = %q.id, "deleted while it started; stopping it");
                if let Err(e) = self.shutdown(&k).await {
                    tracing::warn!(kernel_id = %q.id, error = %e, "cannot stop a cancelled start");
                }
            }
            Ok(k) => {
                q.state.send_replace(QueueState::Started(k));
            }
            Err(e) => {
                tracing::warn!(kernel_id = %q.id, error = %e, "an admitted kernel failed to start");
                self.release(q.id);
                q.state.send_replace(QueueState::Failed(e.to_string()));
            }
        }
    }

    /// Warns a kernel on a borrowed GPU, then stops it at `deadline`.
    async fn reclaim(self: Arc<Self>, id: uuid::Uuid, for_group: &str, deadline: u64) {
        let kernel = {
            // Held while looking, so `start_admitted` (which registers the
            // kernel, then takes its pending reclaim) cannot slip between.
            let mut pending = self
                .pending_reclaims
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let running = self
                .kernels
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned();
            match running {
                Some(k) => k,
                None => {
                    // Still launching: admission holds its GPUs until the
                    // kernel runs and is reclaimed, or fails and is released.
                    tracing::info!(kernel_id = %id, %for_group, "reclaim waits for the kernel to finish starting");
                    pending.insert(id, (for_group.to_owned(), deadline));
                    return;
                }
            }
        };
        let left = deadline.saturating_sub(now_ms());
        let text = format!(
            "Academy Lab: this kernel runs on a GPU borrowed from group {for_group}, which needs it back. \
             Save your work: the kernel stops in {} s.",
            left / 1000
        );
        tracing::info!(kernel_id = %id, %for_group, seconds = left / 1000, "reclaiming a borrowed GPU");
        kernel.notify("reclaim", &text, left / 1000).await;
        tokio::time::sleep(Duration::from_millis(left)).await;
        if let Err(e) = self.shutdown(&kernel).await {
            tracing::warn!(kernel_id = %id, error = %e, "reclaim: shutdown failed");
        }
    }

    /// Runs admission's clock, quota reloads and the idle culler, once a second.
    pub fn start_background(self: &Arc<Self>) {
        if let Some(mut rx) = self
            .events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let me = self.clone();
            tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    me.handle(vec![e]);
                }
            });
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = now_ms();
                let mut events = me.scheduling.reload(now);
                events.extend(me.scheduling.dispatch(now));
                me.handle(events);
                me.cull().await;
            }
        });
    }

    /// Warns, then stops, kernels idle (or running) longer than the policy allows.
    async fn cull(self: &Arc<Self>) {
        let policy = self.cull;
        for kernel in self.all() {
            let (state, idle_for, connections) = {
                let a = kernel.activity.lock().unwrap_or_else(|e| e.into_inner());
                (
                    a.execution_state.clone(),
                    (Utc::now() - a.last_activity).to_std().unwrap_or_default(),
                    a.connections,
                )
            };
            let age = (Utc::now() - kernel.created).to_std().unwrap_or_default();
            let timeout = if kernel.has_gpus() {
                policy.idle_gpu
            } else {
                policy.idle_cpu
            };
            let idle = state == "idle"
                && (policy.connected || connections == 0)
                && timeout.is_some_and(|t| idle_for >= t);
            let too_old = policy.max_runtime.is_some_and(|m| age >= m) && state != "dead";
            let mut warned = *kernel.warned.lock().unwrap_or_else(|e| e.into_inner());
            if !(idle || too_old) {
                // Activity after a warning cancels it.
                if warned.is_some() && !too_old {
                    *kernel.warned.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                continue;
            }
            match warned {
                None => {
                    let why = if too_old {
                        "it reached the maximum runtime"
                    } else {
                        "it has been idle"
                    };
                    let text = format!(
                        "Academy Lab: this kernel will be shut down in {} s because {why}{}. Save your work.",
                        policy.warning.as_secs(),
                        if kernel.has_gpus() {
                            ", to free its GPU"
                        } else {
                            ""
                        }
                    );
                    tracing::info!(kernel_id = %kernel.id, %why, "culling: warning the clients");
                    warned = Some(std::time::Instant::now());
                    *kernel.warned.lock().unwrap_or_else(|e| e.into_inner()) = warned;
                    kernel.notify("cull", &text, policy.warning.as_secs()).await;
                }
                Some(at) if at.elapsed() >= policy.warning => {
                    tracing::info!(kernel_id = %kernel.id, idle_s = idle_for.as_secs(), "culling a kernel");
                    self.metrics.culled.inc();
                    if let Err(e) = self.shutdown(&kernel).await {
                        tracing::warn!(kernel_id = %kernel.id, error = %e, "cull: shutdown failed");
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Launches a kernel and waits until it answers; not yet recorded or listed.
    async fn launch(
        &self,
        id: uuid::Uuid,
        user: &User,
        spec_name: &str,
        env: &BTreeMap<String, String>,
        cwd: PathBuf,
        grant: Option<&Grant>,
    ) -> Result<Arc<Kernel>, ApiError> {
        let spec_name = spec_name.to_owned();
        let mut launch = self.launch_spec(id, &user.name, &spec_name, env, grant)?;
        launch.cwd = cwd;
        let interrupt_by_message = self
            .specs
            .get(&spec_name)
            .is_some_and(|s| s.interrupt_by_message());
        let started = std::time::Instant::now();
        let (progress, mut said) = mpsc::unbounded_channel::<String>();
        launch.progress = Some(progress);
        self.launching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Launching {
                    user: user.name.clone(),
                    spec: spec_name.clone(),
                    created: Utc::now(),
                    resources: resources_model(grant),
                    progress: "starting the kernel".into(),
                },
            );
        let launching = self.launching.clone();
        // Ends when the launch drops its sender.
        tokio::spawn(async move {
            while let Some(p) = said.recv().await {
                if let Some(l) = launching
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&id)
                {
                    l.progress = p;
                }
            }
        });
        let launched = self.launcher.launch(launch).await;
        self.launching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let launched = launched.map_err(|e| {
            ApiError::Unavailable(format!("kernel {spec_name} failed to start: {e}"))
        })?;
        let kernel = Kernel::new(
            id,
            user.name.clone(),
            spec_name.clone(),
            Utc::now(),
            interrupt_by_message,
            Endpoint {
                connection: launched.connection.clone(),
                locator: launched.locator.clone(),
                generation: 0,
            },
            "starting",
            self.limits,
            self.message_limits,
        );
        self.attach(&kernel);
        if !self.wait_ready(&kernel).await {
            self.metrics.launch_failures.inc();
            let alive = self.launcher.is_alive(&launched.locator).await;
            let log = self.launcher.log_tail(id, 2000).await;
            self.kill(&kernel).await;
            let why = if alive {
                format!("did not answer within {}s", READY_TIMEOUT.as_secs())
            } else {
                "exited while starting".to_owned()
            };
            let log = log.trim();
            return Err(ApiError::Unavailable(if log.is_empty() {
                format!("kernel {spec_name} {why}")
            } else {
                format!("kernel {spec_name} {why}; its last output:\n{log}")
            }));
        }
        self.metrics
            .launch_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(kernel_id = %id, spec = %spec_name, user = %user.name, ms = started.elapsed().as_millis() as u64, "kernel ready");
        Ok(kernel)
    }

    /// Re-attaches to kernels recorded by an earlier gateway process.
    pub async fn reattach(&self) {
        let rows = match self.store.kernels() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read kernels to re-attach");
                return;
            }
        };
        for row in rows {
            let (Ok(connection), Ok(locator)) = (
                serde_json::from_str::<ConnectionInfo>(&row.connection),
                serde_json::from_str::<KernelLocator>(&row.locator),
            ) else {
                let _ = self.store.delete_kernel(row.id);
                continue;
            };
            if !self.launcher.is_alive(&locator).await {
                tracing::info!(kernel_id = %row.id, "recorded kernel is gone");
                self.launcher.cleanup(row.id, &locator).await;
                let _ = self.store.delete_kernel(row.id);
                continue;
            }
            let interrupt_by_message = self
                .specs
                .get(&row.spec)
                .is_some_and(|s| s.interrupt_by_message());
            let created = DateTime::parse_from_rfc3339(&row.created)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|_| Utc::now());
            let kernel = Kernel::new(
                row.id,
                row.owner,
                row.spec,
                created,
                interrupt_by_message,
                Endpoint {
                    connection,
                    locator,
                    generation: 0,
                },
                "idle",
                self.limits,
                self.message_limits,
            );
            let grant: Option<Grant> = serde_json::from_str(&row.resources).ok();
            let owner_group = self
                .store
                .user(&kernel.owner())
                .ok()
                .flatten()
                .and_then(|u| u.group);
            let since = kernel.created.timestamp_millis().max(0) as u64;
            self.scheduling.restore(
                kernel.id,
                &kernel.owner(),
                owner_group.as_deref(),
                grant.as_ref().unwrap_or(&Grant::default()),
                since,
            );
            kernel.set_grant(grant);
            self.attach(&kernel);
            tracing::info!(kernel_id = %kernel.id, "re-attached to a running kernel");
            self.kernels
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(kernel.id, kernel);
        }
    }

    /// Starts the iopub subscriber and the liveness monitor of a kernel.
    fn attach(&self, kernel: &Arc<Kernel>) {
        let endpoint = kernel.endpoint.borrow().clone();
        let k = kernel.clone();
        let iopub_task = tokio::spawn(async move {
            let signer = Signer::new(&endpoint.connection.key);
            let limit = k.message_limits.iopub;
            let mut sub =
                match kernel_client::subscriber(&endpoint.connection.iopub_url(), limit).await {
                    Ok(sub) => sub,
                    Err(e) => {
                        tracing::warn!(kernel_id = %k.id, error = %e, "cannot subscribe to iopub");
                        return;
                    }
                };
            loop {
                let frames = match sub.recv().await {
                    Ok(frames) => frames,
                    Err(e) => {
                        if let Some(what) = kernel_client::oversized(&e) {
                            k.report_oversized(Channel::Iopub, what).await;
                        } else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    }
                };
                let mut msg = match RawMessage::from_frames(frames.into_vec(), &signer) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(kernel_id = %k.id, error = %e, "dropped an iopub message");
                        continue;
                    }
                };
                let (_, msg_type) = msg.ids();
                if matches!(
                    msg_type,
                    "display_data" | "update_display_data" | "execute_result"
                ) && strip_forged_notice(&mut msg)
                {
                    tracing::warn!(kernel_id = %k.id, "took a gateway notice mimetype out of the kernel's output");
                }
                let (_, msg_type) = msg.ids();
                if msg_type == "status" {
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg.content)
                        && let Some(state) = v["execution_state"].as_str()
                    {
                        if state == "busy" {
                            *k.busy_parent.lock().unwrap_or_else(|e| e.into_inner()) =
                                msg.parent_header.clone();
                        }
                        k.set_state(state);
                    }
                } else {
                    k.touch();
                }
                k.publish(Arc::new(msg)).await;
            }
        });
        let k = kernel.clone();
        let launcher = self.launcher.clone();
        let scheduling = self.scheduling.clone();
        let events = self.events.clone();
        let monitor = tokio::spawn(async move {
            let mut rx = k.endpoint();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let locator = rx.borrow_and_update().locator.clone();
                if !launcher.is_alive(&locator).await && k.execution_state() != "dead" {
                    // Unless a restart replaced the process meanwhile.
                    if rx.has_changed().unwrap_or(false) {
                        continue;
                    }
                    tracing::warn!(kernel_id = %k.id, "kernel process died");
                    // Its GPUs are free at once.
                    for e in scheduling.release(k.id, now_ms()) {
                        let _ = events.send(e);
                    }
                    k.set_state("dead");
                    k.announce("dead").await;
                }
            }
        });
        let mut tasks = kernel.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(iopub_task.abort_handle());
        tasks.push(monitor.abort_handle());
        if let Some(window) = self.orphan_timeout {
            let connection = kernel.endpoint.borrow().connection.clone();
            let pinger = tokio::spawn(ping_heartbeat(connection, heartbeat_interval(window)));
            tasks.push(pinger.abort_handle());
        }
    }

    async fn wait_ready(&self, kernel: &Kernel) -> bool {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let endpoint = kernel.endpoint.borrow().clone();
            if !self.launcher.is_alive(&endpoint.locator).await {
                return false;
            }
            let req = RawMessage::request("kernel_info_request", json!({}));
            if request(
                &endpoint.connection,
                Channel::Shell,
                req,
                Duration::from_millis(500),
            )
            .await
            .is_some()
            {
                if kernel.execution_state() == "starting" {
                    kernel.set_state("idle");
                }
                return self.wait_iopub(kernel, &endpoint).await;
            }
            // Not listening yet: a refused connect returns at once, and a tight
            // retry loop would take the CPU the starting kernel needs.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Waits until our iopub subscription is live: a kernel drops what it
    /// publishes before a subscriber has joined, so we nudge it with
    /// kernel_info requests until their status messages reach us, as
    /// jupyter_client does.
    async fn wait_iopub(&self, kernel: &Kernel, endpoint: &Endpoint) -> bool {
        let mut rx = kernel.subscribe();
        for attempt in 0..50u32 {
            let req = RawMessage::request("kernel_info_request", json!({}));
            let _ = request(
                &endpoint.connection,
                Channel::Shell,
                req,
                Duration::from_millis(500),
            )
            .await;
            // The status of a nudge that got through follows its reply within
            // milliseconds; one that was lost is retried soon, so a start does not
            // wait out a long timeout for a subscription that joined meanwhile.
            let wait = Duration::from_millis((10u64 << attempt.min(5)).min(200));
            if tokio::time::timeout(wait, rx.rx.recv()).await.is_ok() {
                return true;
            }
        }
        false
    }

    pub async fn interrupt(&self, kernel: &Kernel) -> Result<(), ApiError> {
        let endpoint = kernel.endpoint.borrow().clone();
        if kernel.interrupt_by_message {
            let req = RawMessage::request("interrupt_request", json!({}));
            if request(
                &endpoint.connection,
                Channel::Control,
                req,
                Duration::from_secs(5),
            )
            .await
            .is_none()
            {
                return Err(ApiError::Unavailable(
                    "the kernel did not answer the interrupt".into(),
                ));
            }
        } else {
            self.launcher
                .signal(&endpoint.locator, KernelSignal::Interrupt)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// Asks the kernel to shut down, then kills its process group after a grace period.
    async fn stop_process(&self, endpoint: &Endpoint, restart: bool) {
        let req = RawMessage::request("shutdown_request", json!({"restart": restart}));
        let _ = request(
            &endpoint.connection,
            Channel::Control,
            req,
            Duration::from_secs(2),
        )
        .await;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while tokio::time::Instant::now() < deadline
            && self.launcher.is_alive(&endpoint.locator).await
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self
            .launcher
            .signal(&endpoint.locator, KernelSignal::Kill)
            .await;
        for _ in 0..50 {
            if !self.launcher.is_alive(&endpoint.locator).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn kill(&self, kernel: &Kernel) {
        kernel.stop_tasks();
        let endpoint = kernel.endpoint.borrow().clone();
        let _ = self
            .launcher
            .signal(&endpoint.locator, KernelSignal::Kill)
            .await;
        self.launcher.cleanup(kernel.id, &endpoint.locator).await;
    }

    pub async fn shutdown(&self, kernel: &Arc<Kernel>) -> Result<(), ApiError> {
        kernel
            .channel_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.kernels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&kernel.id);
        let endpoint = kernel.endpoint.borrow().clone();
        self.stop_process(&endpoint, false).await;
        // The process is gone: its GPUs go to the next in the queue now.
        let events = self.scheduling.release(kernel.id, now_ms());
        self.events_to_handle(events);
        kernel.stop_tasks();
        kernel.set_state("dead");
        kernel.announce("dead").await;
        self.launcher.cleanup(kernel.id, &endpoint.locator).await;
        self.store.delete_kernel(kernel.id)?;
        Ok(())
    }

    /// Hands events to the background task (for callers without an `Arc`).
    fn events_to_handle(&self, events: Vec<Event>) {
        for e in events {
            let _ = self.events.send(e);
        }
    }

    pub async fn restart(&self, kernel: &Arc<Kernel>) -> Result<(), ApiError> {
        let old = kernel.endpoint.borrow().clone();
        kernel.set_state("restarting");
        kernel.announce("restarting").await;
        self.stop_process(&old, true).await;
        kernel.stop_tasks();
        self.launcher.cleanup(kernel.id, &old.locator).await;
        let launch = self.launch_spec(
            kernel.id,
            &kernel.owner(),
            &kernel.spec,
            &BTreeMap::new(),
            kernel.grant().as_ref(),
        )?;
        let launched = self
            .launcher
            .launch(launch)
            .await
            .map_err(|e| ApiError::Unavailable(format!("restart failed: {e}")))?;
        kernel.endpoint.send_replace(Endpoint {
            connection: launched.connection.clone(),
            locator: launched.locator.clone(),
            generation: old.generation + 1,
        });
        kernel.set_state("starting");
        self.attach(kernel);
        if !self.wait_ready(kernel).await {
            return Err(ApiError::Unavailable(
                "the restarted kernel did not answer".into(),
            ));
        }
        self.store.save_kernel(&KernelRow {
            id: kernel.id,
            owner: kernel.owner(),
            spec: kernel.spec.clone(),
            connection: serde_json::to_string(&launched.connection).unwrap_or_default(),
            locator: serde_json::to_string(&launched.locator).unwrap_or_default(),
            created: timestamp(kernel.created),
            resources: kernel
                .grant()
                .and_then(|g| serde_json::to_string(&g).ok())
                .unwrap_or_default(),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(content: &str) -> RawMessage {
        let mut m = RawMessage::new_in_session("display_data", "s", json!({}));
        m.content = bytes::Bytes::copy_from_slice(content.as_bytes());
        m
    }

    #[test]
    fn a_kernel_cannot_send_the_gateway_notice_mimetype() {
        // Plain, with the key spelled through JSON escapes, and behind a
        // repeated "data" (a browser's JSON.parse keeps the last).
        for forged in [
            r#"{"data":{"text/plain":"log in again","application/vnd.academy.notice+json":{"kind":"reclaim"}},"metadata":{}}"#,
            r#"{"data":{"text/plain":"log in again","application\/vnd.academy.notice\u002bjson":{"kind":"reclaim"}},"metadata":{}}"#,
            r#"{"data":{"text/plain":"x"},"data":{"text/plain":"log in again","application/vnd.academy.notice+json":{}},"metadata":{}}"#,
        ] {
            let mut m = display(forged);
            assert!(strip_forged_notice(&mut m), "{forged}");
            let v: Value = serde_json::from_slice(&m.content).unwrap();
            assert_eq!(v["data"], json!({"text/plain": "log in again"}));
            assert_eq!(v["metadata"], json!({}));
        }
        // Anything else passes untouched, byte for byte.
        let plain = r#"{"data":{"text/plain":"1","image/png":"iVBOR"},"metadata":{"x":1}}"#;
        let mut m = display(plain);
        assert!(!strip_forged_notice(&mut m));
        assert_eq!(&m.content[..], plain.as_bytes());
    }
}
