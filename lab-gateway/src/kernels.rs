//! Running kernels: start, list, interrupt, restart, shut down, watch.
//!
//! Each kernel has one iopub subscriber in the gateway, whose messages fan out
//! to every websocket session of that kernel through its own bounded queue, and a
//! monitor that notices a dead process within 250 ms and tells the clients.
//! Kernels belong to a user; callers check ownership before acting.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jupyter_protocol::ConnectionInfo;
use scheduler::launcher::KernelSignal;
use scheduler::{KernelLocator, LaunchSpec, Launcher};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use zeromq::{Socket, SocketRecv, SocketSend};

use crate::error::ApiError;
use crate::kernelspecs::Specs;
use crate::store::{KernelRow, Store, User};
use crate::wire::{Channel, RawMessage, Signer};

/// iopub messages a subscriber may fall behind before it is told some were dropped.
/// Each subscriber has its own queue, freed as it reads: no ring of old messages
/// stays alive, however large they were.
const FANOUT: usize = 4096;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

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
    /// Websocket sessions by session_id (see `ws`), which outlive a websocket.
    pub channel_sessions: Mutex<HashMap<String, Arc<crate::ws::ChannelSession>>>,
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
            limits,
        })
    }

    pub fn limits(&self) -> crate::ws::RateLimits {
        self.limits
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
        let a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "id": self.id.to_string(),
            "name": self.spec,
            "last_activity": timestamp(a.last_activity),
            "execution_state": a.execution_state,
            "connections": a.connections,
        })
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

/// A DEALER socket to one of a kernel's request channels, with its own identity.
pub async fn dealer(
    conn: &ConnectionInfo,
    channel: Channel,
    identity: &[u8],
) -> Result<zeromq::DealerSocket, zeromq::ZmqError> {
    let url = match channel {
        Channel::Shell => conn.shell_url(),
        Channel::Control => conn.control_url(),
        Channel::Stdin => conn.stdin_url(),
        Channel::Iopub => conn.iopub_url(),
    };
    let mut options = zeromq::SocketOptions::default();
    if let Ok(id) = zeromq::util::PeerIdentity::try_from(identity.to_vec()) {
        options.peer_identity(id);
    }
    let mut socket = zeromq::DealerSocket::with_options(options);
    socket.connect(&url).await?;
    Ok(socket)
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
    let mut socket = tokio::time::timeout(timeout, dealer(conn, channel, identity.as_bytes()))
        .await
        .ok()?
        .ok()?;
    let frames = zeromq::ZmqMessage::try_from(msg.to_frames(&signer)).ok()?;
    socket.send(frames).await.ok()?;
    tokio::time::timeout(timeout, async {
        loop {
            let reply = socket.recv().await.ok()?;
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
    metrics: Arc<crate::metrics::Metrics>,
    launcher: Arc<dyn Launcher>,
    specs: Specs,
    store: Store,
    users_root: PathBuf,
}

/// What a start request asks for (`POST /api/kernels`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct StartRequest {
    pub name: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl KernelManager {
    pub fn new(
        launcher: Arc<dyn Launcher>,
        specs: Specs,
        store: Store,
        users_root: PathBuf,
    ) -> Self {
        KernelManager {
            kernels: RwLock::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            pool_sizes: BTreeMap::new(),
            pool_filling: tokio::sync::Mutex::new(false),
            limits: Default::default(),
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
                        &pool_user,
                        spec,
                        &BTreeMap::new(),
                        self.users_root.join(".pool"),
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

    /// Sets the iopub output limits of kernels started from now on.
    pub fn with_limits(mut self, limits: crate::ws::RateLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
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
        Ok(LaunchSpec {
            kernel_id: id,
            argv: spec.argv(),
            env,
            cwd: self.users_root.join(user),
            gpus: Vec::new(),
        })
    }

    pub async fn start(
        self: &Arc<Self>,
        user: &User,
        req: StartRequest,
    ) -> Result<Arc<Kernel>, ApiError> {
        let spec_name = req
            .name
            .or_else(|| self.specs.default_name().map(str::to_owned))
            .ok_or_else(|| ApiError::NotFound("no kernelspecs are installed".into()))?;
        if self.specs.get(&spec_name).is_none() {
            return Err(ApiError::NotFound(format!(
                "No such kernel spec: {spec_name}"
            )));
        }
        let pooled = if req.env.is_empty() {
            self.adopt(user, &spec_name).await
        } else {
            None
        };
        let kernel = match pooled {
            Some(k) => k,
            None => {
                self.launch(user, &spec_name, &req.env, self.users_root.join(&user.name))
                    .await?
            }
        };
        let endpoint = kernel.endpoint.borrow().clone();
        self.store.save_kernel(&KernelRow {
            id: kernel.id,
            owner: user.name.clone(),
            spec: spec_name,
            connection: serde_json::to_string(&endpoint.connection).unwrap_or_default(),
            locator: serde_json::to_string(&endpoint.locator).unwrap_or_default(),
            created: timestamp(kernel.created),
        })?;
        self.kernels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kernel.id, kernel.clone());
        Ok(kernel)
    }

    /// Launches a kernel and waits until it answers; not yet recorded or listed.
    async fn launch(
        &self,
        user: &User,
        spec_name: &str,
        env: &BTreeMap<String, String>,
        cwd: PathBuf,
    ) -> Result<Arc<Kernel>, ApiError> {
        let spec_name = spec_name.to_owned();
        let id = uuid::Uuid::new_v4();
        let mut launch = self.launch_spec(id, &user.name, &spec_name, env)?;
        launch.cwd = cwd;
        let interrupt_by_message = self
            .specs
            .get(&spec_name)
            .is_some_and(|s| s.interrupt_by_message());
        let started = std::time::Instant::now();
        let launched = self.launcher.launch(launch).await.map_err(|e| {
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
            );
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
            // The kernel may not have bound yet: retry until the SUB connects.
            let mut sub = loop {
                let mut sub = zeromq::SubSocket::new();
                let connected = tokio::time::timeout(
                    Duration::from_secs(1),
                    sub.connect(&endpoint.connection.iopub_url()),
                )
                .await;
                if matches!(connected, Ok(Ok(()))) {
                    break sub;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if let Err(e) = sub.subscribe("").await {
                tracing::warn!(kernel_id = %k.id, error = %e, "cannot subscribe to iopub");
                return;
            }
            loop {
                let Ok(frames) = sub.recv().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let msg = match RawMessage::from_frames(frames.into_vec(), &signer) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(kernel_id = %k.id, error = %e, "dropped an iopub message");
                        continue;
                    }
                };
                let (_, msg_type) = msg.ids();
                if msg_type == "status" {
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg.content)
                        && let Some(state) = v["execution_state"].as_str()
                    {
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
                    k.set_state("dead");
                    k.announce("dead").await;
                }
            }
        });
        let mut tasks = kernel.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(iopub_task.abort_handle());
        tasks.push(monitor.abort_handle());
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
        }
        false
    }

    /// Waits until our iopub subscription is live: a kernel drops what it
    /// publishes before a subscriber has joined, so we nudge it with
    /// kernel_info requests until their status messages reach us, as
    /// jupyter_client does.
    async fn wait_iopub(&self, kernel: &Kernel, endpoint: &Endpoint) -> bool {
        let mut rx = kernel.subscribe();
        for _ in 0..50 {
            let req = RawMessage::request("kernel_info_request", json!({}));
            let _ = request(
                &endpoint.connection,
                Channel::Shell,
                req,
                Duration::from_millis(500),
            )
            .await;
            if tokio::time::timeout(Duration::from_millis(200), rx.rx.recv())
                .await
                .is_ok()
            {
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
        kernel.stop_tasks();
        kernel.set_state("dead");
        kernel.announce("dead").await;
        self.launcher.cleanup(kernel.id, &endpoint.locator).await;
        self.store.delete_kernel(kernel.id)?;
        Ok(())
    }

    pub async fn restart(&self, kernel: &Arc<Kernel>) -> Result<(), ApiError> {
        let old = kernel.endpoint.borrow().clone();
        kernel.set_state("restarting");
        kernel.announce("restarting").await;
        self.stop_process(&old, true).await;
        kernel.stop_tasks();
        self.launcher.cleanup(kernel.id, &old.locator).await;
        let launch =
            self.launch_spec(kernel.id, &kernel.owner(), &kernel.spec, &BTreeMap::new())?;
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
        })?;
        Ok(())
    }

    /// Stops every kernel (gateway shutdown with `--shutdown-kernels`).
    pub async fn shutdown_all(&self) {
        for k in self.all() {
            let _ = self.shutdown(&k).await;
        }
    }
}
