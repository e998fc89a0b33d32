//! Supervision of kernel processes: launch and wait until ready, watch
//! (iopub, liveness, heartbeat), interrupt, restart, stop.
//!
//! Everything here acts on one kernel and knows nothing of users' quotas or
//! of the starts map: the manager decides, the supervisor carries out. A
//! process that dies is reported on the `deaths` channel, so the manager can
//! give its GPUs back. The gateway pings each kernel's heartbeat well inside
//! its orphan window (`ACADEMY_ORPHAN_TIMEOUT`), so an academy kernel whose
//! gateway is gone for longer ends itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jupyter_protocol::{ConnectionInfo, InterruptRequest, ShutdownRequest};
use launch::launcher::KernelSignal;
use launch::{LaunchSpec, Launched, Launcher};
use scheduler::Grant;
use serde_json::Value;
use tokio::sync::mpsc;
use zeromq::SocketRecv;

use super::error::{KernelError, StartError};
use super::kernel::{Endpoint, Kernel};
use super::notice::strip_forged_notice;
use super::resources::Restrictions;
use crate::kernel_client::{self, MessageLimits};
use crate::kernelspecs::Specs;
use crate::metrics::Metrics;
use crate::wire::{Channel, RawMessage, Signer};

pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often a kernel's process is checked for life.
const MONITOR_EVERY: Duration = Duration::from_millis(250);
pub use crate::config::DEFAULT_ORPHAN_TIMEOUT;

/// What a launch is for.
pub struct LaunchRequest<'a> {
    pub id: uuid::Uuid,
    /// Empty for a warm-pool kernel.
    pub user: &'a str,
    pub group: Option<String>,
    pub spec: &'a str,
    /// The client's variables; only `KERNEL_*` ones pass.
    pub env: &'a BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Where it starts, inside `cwd` (`LaunchSpec::workdir`).
    pub workdir: Option<PathBuf>,
    pub grant: Option<&'a Grant>,
    /// Where the backend's word on a slow start goes.
    pub progress: Option<mpsc::UnboundedSender<String>>,
    /// No network, a memory limit (grading kernels).
    pub restrictions: Restrictions,
}

pub struct Supervisor {
    pub(super) launcher: Arc<dyn Launcher>,
    specs: Specs,
    pub(crate) message_limits: MessageLimits,
    /// Given to every kernel as `ACADEMY_ORPHAN_TIMEOUT`; `None` lets
    /// kernels outlive their gateway for ever.
    pub(crate) orphan_timeout: Option<Duration>,
    pub(super) metrics: Arc<Metrics>,
    deaths: mpsc::UnboundedSender<uuid::Uuid>,
    /// What each user's kernels are shown read-only (set once, at wiring).
    pub(crate) shares: std::sync::OnceLock<Arc<dyn Shares>>,
}

/// The folders a user's kernels read and never write (a competition's
/// participant files), asked at every launch of theirs, restarts included.
pub trait Shares: Send + Sync {
    fn read_only(&self, user: &str) -> Vec<launch::ReadOnlyMount>;
}

impl Supervisor {
    pub fn new(
        launcher: Arc<dyn Launcher>,
        specs: Specs,
        metrics: Arc<Metrics>,
        deaths: mpsc::UnboundedSender<uuid::Uuid>,
    ) -> Self {
        Supervisor {
            launcher,
            specs,
            message_limits: Default::default(),
            orphan_timeout: Some(DEFAULT_ORPHAN_TIMEOUT),
            metrics,
            deaths,
            shares: std::sync::OnceLock::new(),
        }
    }

    pub fn specs(&self) -> &Specs {
        &self.specs
    }

    pub(super) fn launch_spec(&self, r: &LaunchRequest<'_>) -> Result<LaunchSpec, StartError> {
        let spec = self
            .specs
            .get(r.spec)
            .ok_or_else(|| StartError::NoSuchSpec(r.spec.to_owned()))?;
        let mut env = spec.env();
        // Like Kernel Gateway, a client may pass KERNEL_* variables only,
        // and only ones a process can have (no `=` or NUL in a name, no NUL
        // in a value), so a cold and a pooled start get the same ones.
        env.extend(
            r.env
                .iter()
                .filter(|(k, v)| {
                    k.starts_with("KERNEL_") && !k.contains(['=', '\0']) && !v.contains('\0')
                })
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        env.insert("KERNEL_USERNAME".into(), r.user.to_owned());
        env.insert("KERNEL_ID".into(), r.id.to_string());
        if let Some(window) = self.orphan_timeout {
            env.insert(
                "ACADEMY_ORPHAN_TIMEOUT".into(),
                window.as_secs_f64().to_string(),
            );
        }
        let mut gpus = Vec::new();
        if let Some(g) = r.grant.filter(|g| !g.devices.is_empty()) {
            gpus = g.devices.clone();
            if let Some(m) = &g.model {
                env.insert("ACADEMY_GPU_MODEL".into(), m.clone());
            }
            if !g.real {
                // Modelled GPUs: accounted like real ones, but the kernel runs on CPU.
                env.insert("ACADEMY_VIRTUAL_GPU".into(), "1".into());
            }
        }
        Ok(LaunchSpec {
            kernel_id: r.id,
            argv: spec.argv(),
            env,
            cwd: r.cwd.clone(),
            workdir: r.workdir.clone(),
            gpus,
            user: r.user.to_owned(),
            group: r.group.clone(),
            gpu_model: r.grant.and_then(|g| g.model.clone()),
            cpu: r.grant.and_then(|g| g.cpu.clone()),
            memory: r.grant.and_then(|g| g.memory.clone()),
            progress: None,
            launch_channel: spec.launch_channel(),
            offline: r.restrictions.offline,
            memory_limit: r.restrictions.memory_limit,
            deadline: r.restrictions.deadline,
            read_only: self
                .shares
                .get()
                .map(|s| s.read_only(r.user))
                .unwrap_or_default()
                .into_iter()
                .chain(r.restrictions.read_only.iter().cloned())
                .collect(),
        })
    }

    /// Launches a kernel and waits until it answers; not yet recorded or listed.
    pub async fn launch(&self, mut r: LaunchRequest<'_>) -> Result<Arc<Kernel>, StartError> {
        let mut launch = self.launch_spec(&r)?;
        launch.progress = r.progress.take();
        let spec = r.spec.to_owned();
        let started = std::time::Instant::now();
        let launched = self.launcher.launch(launch).await.map_err(|e| {
            self.metrics.launch_failed("launch", e.metric_label());
            StartError::Launch {
                spec: spec.clone(),
                source: Arc::new(e),
            }
        })?;
        self.become_ready(&r, spec, &launched, started).await
    }

    pub(super) fn interrupt_by_message(&self, spec: &str) -> bool {
        self.specs
            .get(spec)
            .is_some_and(|s| s.interrupt_by_message())
    }

    /// A kernel recorded by an earlier gateway process, if its process still
    /// runs; watched from now on.
    pub async fn reattach(&self, row: &crate::store::KernelRow) -> Option<Arc<Kernel>> {
        let (Ok(connection), Ok(locator)) = (
            serde_json::from_str::<ConnectionInfo>(&row.connection),
            serde_json::from_str(&row.locator),
        ) else {
            tracing::warn!(kernel_id = %row.id, "a recorded kernel has an unreadable record");
            return None;
        };
        if !self.launcher.is_alive(&locator).await {
            tracing::info!(kernel_id = %row.id, "recorded kernel is gone");
            self.launcher.cleanup(row.id, &locator).await;
            return None;
        }
        let created = chrono::DateTime::parse_from_rfc3339(&row.created)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        let kernel = Kernel::new(
            row.id,
            row.owner.clone(),
            row.spec.clone(),
            created,
            self.interrupt_by_message(&row.spec),
            Endpoint {
                connection,
                locator,
                generation: 0,
            },
            "idle",
            self.message_limits,
            // Not recorded: the only restricted kernels, grading ones, are
            // stopped when a gateway starts (`coursework::grader`).
            Restrictions::default(),
        );
        kernel.set_grant(serde_json::from_str(&row.resources).ok());
        self.attach(&kernel);
        Some(kernel)
    }

    /// Starts the iopub subscriber, the liveness monitor and the heartbeat
    /// pinger of a kernel's current process.
    pub(super) fn attach(&self, kernel: &Arc<Kernel>) {
        let k = kernel.clone();
        let iopub = tokio::spawn(relay_iopub(k));
        let k = kernel.clone();
        let launcher = self.launcher.clone();
        let deaths = self.deaths.clone();
        let monitor = tokio::spawn(async move {
            let mut rx = k.endpoint();
            loop {
                tokio::time::sleep(MONITOR_EVERY).await;
                let locator = rx.borrow_and_update().locator.clone();
                if !launcher.is_alive(&locator).await && !k.has_died() {
                    // Unless a restart replaced the process meanwhile.
                    if rx.has_changed().unwrap_or(false) {
                        continue;
                    }
                    tracing::warn!(kernel_id = %k.id, "kernel process died");
                    // Its GPUs are free at once (the manager's to do).
                    if deaths.send(k.id).is_err() {
                        tracing::debug!(kernel_id = %k.id, "nobody hears of deaths any more");
                    }
                    k.mark_died();
                    k.set_state("dead");
                    k.announce("dead").await;
                }
            }
        });
        kernel.keep_task(iopub.abort_handle());
        kernel.keep_task(monitor.abort_handle());
        if let Some(window) = self.orphan_timeout {
            let connection = kernel.current_endpoint().connection;
            let pinger = tokio::spawn(ping_heartbeat(connection, heartbeat_interval(window)));
            kernel.keep_task(pinger.abort_handle());
        }
    }

    pub async fn interrupt(&self, kernel: &Kernel) -> Result<(), KernelError> {
        let endpoint = kernel.current_endpoint();
        if kernel.interrupt_by_message {
            kernel_client::request(
                &endpoint.connection,
                Channel::Control,
                InterruptRequest {},
                Duration::from_secs(5),
            )
            .await
            .ok_or(KernelError::InterruptUnanswered)?;
        } else {
            self.launcher
                .signal(&endpoint.locator, KernelSignal::Interrupt)
                .await
                .map_err(KernelError::Signal)?;
        }
        Ok(())
    }

    /// Asks the kernel to shut down, then kills it (its whole process tree) after a grace period.
    async fn stop_process(&self, endpoint: &Endpoint, restart: bool) {
        let answered = kernel_client::request(
            &endpoint.connection,
            Channel::Control,
            ShutdownRequest { restart },
            Duration::from_secs(2),
        )
        .await;
        if answered.is_none() {
            tracing::debug!(locator = ?endpoint.locator, "no answer to shutdown_request; it will be killed");
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while tokio::time::Instant::now() < deadline
            && self.launcher.is_alive(&endpoint.locator).await
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.signal_kill(endpoint).await;
        for _ in 0..50 {
            if !self.launcher.is_alive(&endpoint.locator).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn signal_kill(&self, endpoint: &Endpoint) {
        if let Err(e) = self
            .launcher
            .signal(&endpoint.locator, KernelSignal::Kill)
            .await
        {
            // Most often: it is gone already.
            tracing::debug!(locator = ?endpoint.locator, error = %e, "SIGKILL not delivered");
        }
    }

    /// Ends a kernel's process at once and frees what its backend holds.
    pub async fn kill(&self, kernel: &Kernel) {
        kernel.stop_tasks();
        let endpoint = kernel.current_endpoint();
        self.signal_kill(&endpoint).await;
        self.launcher.cleanup(kernel.id, &endpoint.locator).await;
    }

    /// Stops a kernel's process (politely first) and frees what its backend
    /// holds; the kernel's clients are told it is dead.
    pub async fn stop(&self, kernel: &Kernel) {
        let endpoint = kernel.current_endpoint();
        // The monitor goes first: the exit asked for is not a death to report.
        kernel.stop_tasks();
        self.stop_process(&endpoint, false).await;
        kernel.set_state("dead");
        kernel.announce("dead").await;
        self.launcher.cleanup(kernel.id, &endpoint.locator).await;
    }

    /// Stops a kernel and waits until its process is gone (or 10 s after
    /// SIGKILL): for a kernel that must not outlive this call.
    pub async fn stop_surely(&self, kernel: &Kernel) {
        let endpoint = kernel.current_endpoint();
        kernel.stop_tasks();
        self.stop_process(&endpoint, false).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.launcher.is_alive(&endpoint.locator).await {
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(kernel_id = %kernel.id, "a kernel outlived SIGKILL");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.launcher.cleanup(kernel.id, &endpoint.locator).await;
    }

    /// Replaces a kernel's process with a new one under the same id, grant
    /// and owner; its websockets reconnect to the new process.
    pub async fn restart(
        &self,
        kernel: &Arc<Kernel>,
        group: Option<String>,
        cwd: PathBuf,
    ) -> Result<(), KernelError> {
        let old = kernel.current_endpoint();
        kernel.set_state("restarting");
        kernel.announce("restarting").await;
        // The monitor goes first: the old process's exit is no death (its
        // GPUs stay with the kernel).
        kernel.stop_tasks();
        self.stop_process(&old, true).await;
        self.launcher.cleanup(kernel.id, &old.locator).await;
        let owner = kernel.owner();
        let grant = kernel.grant();
        let no_env = BTreeMap::new();
        let launch = self
            .launch_spec(&LaunchRequest {
                id: kernel.id,
                user: &owner,
                group,
                spec: &kernel.spec,
                env: &no_env,
                cwd,
                // A restarted kernel starts where it first did.
                workdir: kernel.folder(),
                grant: grant.as_ref(),
                progress: None,
                // A grading kernel stays offline and limited, whoever restarts it.
                restrictions: kernel.restrictions.clone(),
            })
            .map_err(KernelError::Restart)?;
        let launched = self.launcher.launch(launch).await.map_err(|e| {
            KernelError::Restart(StartError::Launch {
                spec: kernel.spec.clone(),
                source: Arc::new(e),
            })
        })?;
        kernel.replace_endpoint(endpoint(&launched, old.generation + 1));
        kernel.set_state("starting");
        if !self.watch_when_ready(kernel).await {
            return Err(KernelError::Restart(StartError::NotReady {
                spec: kernel.spec.clone(),
                seconds: READY_TIMEOUT.as_secs(),
                log: String::new(),
            }));
        }
        Ok(())
    }

    /// Whether the backend can start kernels now (`/readyz`).
    pub async fn ready(&self) -> Result<(), String> {
        self.launcher.ready().await
    }
}

pub(super) fn endpoint(launched: &Launched, generation: u64) -> Endpoint {
    Endpoint {
        connection: launched.connection.clone(),
        locator: launched.locator.clone(),
        generation,
    }
}

/// Reads a kernel's iopub messages for the life of its process, takes
/// forged notices out, notes its state, and fans them out.
async fn relay_iopub(k: Arc<Kernel>) {
    let endpoint = k.current_endpoint();
    let signer = Signer::new(&endpoint.connection.key);
    let limit = k.message_limits().iopub;
    let mut sub = match kernel_client::subscriber(&endpoint.connection.iopub_url(), limit).await {
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
                k.observe_status(state, &msg.parent_header);
            }
        } else {
            k.touch();
        }
        k.publish(Arc::new(msg)).await;
    }
}

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
