//! The kernel manager: the one place that decides what happens to a start
//! and to a running kernel.
//!
//! A start is recorded in [`Starts`] first, then admission
//! ([`crate::scheduling`]) is asked: refused, admitted now, or queued for a
//! GPU. An admitted start launches in its own task (from the warm pool when
//! it can) and the client is answered 201 with the kernel, or 202 while it is
//! still queued or starting. Admission's later events (admit a queued start,
//! reclaim a borrowed GPU) and the culler's verdicts are acted on by a
//! background task. Launching, watching and stopping processes is the
//! [`Supervisor`]'s job; this module only decides.
//!
//! A kernel that runs is always recorded in the store: one whose record
//! cannot be written is stopped before its GPUs go back to admission.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use launch::Launcher;
use scheduler::admission::{Event, Grant};
use serde_json::Value;
use tokio::sync::mpsc;

use super::culler::{self, CullPolicy, Verdict};
use super::error::KernelError;
use super::kernel::Kernel;
use super::notice::NoticeKind;
use super::pool::Pool;
use super::starts::{Start, StartState, Starts};
use super::supervisor::Supervisor;
use crate::kernel_client::MessageLimits;
use crate::kernelspecs::Specs;
use crate::metrics::{Metrics, Snapshot};
use crate::scheduling::{Scheduling, now_ms};
use crate::store::{KernelRow, Store, User};

/// What a start request led to.
pub enum Started {
    Running(Arc<Kernel>),
    /// Queued for a GPU, or still starting: GET shows which.
    Queued(Arc<Start>),
}

type Background = (
    mpsc::UnboundedReceiver<Event>,
    mpsc::UnboundedReceiver<uuid::Uuid>,
);

pub struct KernelManager {
    pub(super) starts: Starts,
    pub(super) pool: Pool,
    pub(super) supervisor: Supervisor,
    pub(super) scheduling: Arc<Scheduling>,
    pub(super) store: Store,
    pub(super) users_root: PathBuf,
    pub(super) metrics: Arc<Metrics>,
    /// Admission's events, for callers without an `Arc` of the manager.
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) background: Mutex<Option<Background>>,
    /// How long a start that must queue waits before answering 202.
    pub(super) queue_wait: Duration,
    /// How long a launch may take before it is answered 202 `starting`.
    pub(super) answer_after: Duration,
    pub(super) cull: CullPolicy,
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
        let (deaths, deaths_rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::default());
        KernelManager {
            starts: Starts::default(),
            pool: Pool::default(),
            supervisor: Supervisor::new(launcher, specs, metrics.clone(), deaths),
            scheduling,
            store,
            users_root,
            metrics,
            events,
            background: Mutex::new(Some((events_rx, deaths_rx))),
            queue_wait: Duration::from_secs(2),
            answer_after: Duration::from_secs(20),
            cull: CullPolicy::default(),
        }
    }

    /// Keeps `n` waiting kernels of each spec, so a start answers at once.
    /// Only kernels that speak the launch channel (the academy kernels) can
    /// wait for their user; others are refused with a warning.
    pub fn with_warm_pool(mut self, sizes: BTreeMap<String, usize>) -> Self {
        let mut kept = BTreeMap::new();
        for (spec, n) in sizes {
            match self.supervisor.specs().get(&spec) {
                Some(s) if s.launch_channel() => {
                    kept.insert(spec, n);
                }
                _ => {
                    tracing::warn!(%spec, "warm pool: only the academy kernels can wait in the pool")
                }
            }
        }
        self.pool = Pool::new(kept);
        self
    }

    /// Decides starts with `scheduling` (the GPU inventory and quotas).
    pub fn with_scheduling(mut self, scheduling: Arc<Scheduling>) -> Self {
        self.scheduling = scheduling;
        self
    }

    pub fn with_queue_wait(mut self, wait: Duration) -> Self {
        self.queue_wait = wait;
        self
    }

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
        self.supervisor.orphan_timeout = timeout;
        self
    }

    /// Sets the most bytes a message from a kernel may hold, per channel.
    pub fn with_message_limits(mut self, limits: MessageLimits) -> Self {
        self.supervisor.message_limits = limits;
        self
    }

    /// Sets what users' kernels are shown read-only; the first call counts.
    pub fn share_read_only(&self, shares: Arc<dyn super::supervisor::Shares>) {
        let _ = self.supervisor.shares.set(shares);
    }

    pub fn scheduling(&self) -> &Arc<Scheduling> {
        &self.scheduling
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn specs(&self) -> &Specs {
        self.supervisor.specs()
    }

    /// Whether the backend can start kernels now (`/readyz`).
    pub async fn launcher_ready(&self) -> Result<(), String> {
        self.supervisor.ready().await
    }

    /// What `/metrics` reports of the kernels, taken now.
    pub fn snapshot(&self) -> Snapshot {
        let kernels = self.all();
        Snapshot {
            kernels: kernels
                .iter()
                .map(|k| (k.execution_state(), k.spec.clone()))
                .collect(),
            websockets: kernels.iter().map(|k| k.connections()).sum(),
            gpus: self.scheduling.gpu_use(),
        }
    }

    // ----- the warm pool -----

    /// How many ready kernels wait in the pool, by spec.
    pub fn pool_counts(&self) -> BTreeMap<String, usize> {
        self.pool.counts()
    }

    /// Starts kernels until every pool is full. Call it in a spawned task.
    pub async fn fill_pool(&self) {
        self.pool
            .fill(&self.supervisor, &self.users_root.join(".pool"))
            .await;
    }

    /// Stops the pooled kernels, and any fill from now on.
    pub async fn shutdown_pool(&self) {
        self.pool.close(&self.supervisor).await;
    }

    // ----- lookups -----

    /// The running kernel, if it exists and `user` may see it.
    pub fn get_for(&self, user: &User, id: &str) -> Result<Arc<Kernel>, KernelError> {
        id.parse()
            .ok()
            .and_then(|id| self.starts.kernel(id))
            .filter(|k| k.visible_to(user))
            .ok_or_else(|| KernelError::NotFound(id.to_owned()))
    }

    /// A start that waits (queued or starting), if `user` may see it.
    pub fn queued_for(&self, user: &User, id: &str) -> Option<Arc<Start>> {
        self.starts
            .waiting(id.parse().ok()?)
            .filter(|s| s.visible_to(user))
    }

    /// The models of `user`'s waiting starts, oldest first.
    pub fn waiting_models_for(&self, user: &User) -> Vec<Value> {
        self.starts
            .starts()
            .iter()
            .filter(|s| s.visible_to(user))
            .map(|s| self.start_model(s))
            .collect()
    }

    fn start_model(&self, s: &Start) -> Value {
        s.model(self.scheduling.ticket(s.id, now_ms()).as_ref())
    }

    /// The model of a running, starting or queued kernel.
    pub fn model_for(&self, user: &User, id: &str) -> Result<Value, KernelError> {
        match self.queued_for(user, id) {
            Some(s) => Ok(self.start_model(&s)),
            None => Ok(self.get_for(user, id)?.model()),
        }
    }

    /// The kernel, waiting while it is queued (a websocket opened on a
    /// queued kernel connects once it runs).
    pub async fn get_or_wait_for(&self, user: &User, id: &str) -> Result<Arc<Kernel>, KernelError> {
        if let Some(s) = self.queued_for(user, id) {
            return match s.wait(Duration::from_secs(24 * 3600)).await {
                StartState::Started(k) => Ok(k),
                StartState::Failed(why) => Err(KernelError::Failed(why)),
                StartState::Cancelled | StartState::Waiting => {
                    Err(KernelError::NotFound(id.to_owned()))
                }
            };
        }
        self.get_for(user, id)
    }

    /// `user`'s running kernels, oldest first.
    pub fn list_for(&self, user: &User) -> Vec<Arc<Kernel>> {
        let mut v = self.starts.kernels();
        v.retain(|k| k.visible_to(user));
        v
    }

    pub fn all(&self) -> Vec<Arc<Kernel>> {
        self.starts.kernels()
    }

    /// Runs admission's clock, quota reloads and the idle culler, once a
    /// second, and acts on admission's events and on kernels that die (their
    /// GPUs go back here): a gateway that starts kernels must call it once.
    pub fn start_background(self: &Arc<Self>) {
        let Some((mut events, mut deaths)) = self.background.lock().take() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(e) = events.recv() => me.handle(vec![e]),
                    // Its GPUs are free at once.
                    Some(id) = deaths.recv() => me.release(id),
                    else => return,
                }
            }
        });
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
                me.end_deactivated().await;
            }
        });
    }

    /// Warns, then stops, kernels idle (or running) longer than the policy allows.
    pub async fn cull(&self) {
        let now = tokio::time::Instant::now();
        for kernel in self.all() {
            let activity = kernel.activity();
            match culler::judge(&self.cull, &activity, now) {
                Verdict::Keep => {}
                Verdict::CallOff => kernel.set_warned(None),
                Verdict::Warn(why) => {
                    tracing::info!(kernel_id = %kernel.id, ?why, "culling: warning the clients");
                    kernel.set_warned(Some(now));
                    let text = culler::warning_text(&self.cull, why, activity.has_gpus);
                    kernel
                        .notify(NoticeKind::Cull, &text, self.cull.warning.as_secs())
                        .await;
                }
                Verdict::Stop => {
                    tracing::info!(kernel_id = %kernel.id, idle_s = activity.idle_for.as_secs(), "culling a kernel");
                    self.metrics.culled.inc();
                    if let Err(e) = self.shutdown(&kernel).await {
                        tracing::warn!(kernel_id = %kernel.id, error = %e, "cull: shutdown failed");
                    }
                }
            }
        }
    }

    // ----- running kernels -----

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
            let Some(kernel) = self.supervisor.reattach(&row).await else {
                if let Err(e) = self.store.delete_kernel(row.id) {
                    tracing::warn!(kernel_id = %row.id, error = %e, "cannot forget a kernel that is gone");
                }
                continue;
            };
            let owner = kernel.owner();
            let group = self.store.user(&owner).ok().flatten().and_then(|u| u.group);
            let since = kernel.created.timestamp_millis().max(0) as u64;
            self.scheduling.restore(
                kernel.id,
                &owner,
                group.as_deref(),
                kernel.grant().as_ref().unwrap_or(&Grant::default()),
                since,
            );
            tracing::info!(kernel_id = %kernel.id, "re-attached to a running kernel");
            self.starts.running(kernel);
        }
    }

    pub async fn interrupt(&self, kernel: &Kernel) -> Result<(), KernelError> {
        self.supervisor.interrupt(kernel).await
    }

    /// Stops a kernel for good: its process, its GPUs, its record.
    pub async fn shutdown(&self, kernel: &Arc<Kernel>) -> Result<(), KernelError> {
        self.end(kernel, false).await
    }

    /// [`KernelManager::shutdown`] without asking the kernel first: its
    /// whole process tree is killed at once. For a kernel whose state
    /// nobody needs any more (a grading's: its outputs are in), where a
    /// polite shutdown is time spent for nothing.
    pub async fn kill(&self, kernel: &Arc<Kernel>) -> Result<(), KernelError> {
        self.end(kernel, true).await
    }

    async fn end(&self, kernel: &Arc<Kernel>, at_once: bool) -> Result<(), KernelError> {
        self.starts.remove_kernel(kernel);
        // Its websocket sessions let go now.
        kernel.retire();
        if at_once {
            self.supervisor.kill(kernel).await;
            kernel.set_state("dead");
        } else {
            self.supervisor.stop(kernel).await;
        }
        // The process is gone: its GPUs go to the next in the queue now.
        for e in self.scheduling.release(kernel.id, now_ms()) {
            if self.events.send(e).is_err() {
                tracing::warn!("admission's events have no listener");
            }
        }
        self.store.delete_kernel(kernel.id)?;
        Ok(())
    }

    /// Ends what a user runs and waits for, at once: their kernels are
    /// killed (their state is not theirs to keep: they were deactivated)
    /// and their queued starts cancelled. Returns how many of each.
    pub async fn end_user(self: &Arc<Self>, name: &str) -> (usize, usize) {
        let cancelled = self
            .starts
            .starts()
            .into_iter()
            .filter(|s| s.user.name == name)
            .filter(|s| self.cancel(s))
            .count();
        let kernels: Vec<_> = self
            .all()
            .into_iter()
            .filter(|k| k.owner() == name)
            .collect();
        futures_util::future::join_all(kernels.iter().map(|k| async move {
            if let Err(e) = self.kill(k).await {
                tracing::warn!(kernel_id = %k.id, error = %e, "cannot stop a deactivated user's kernel");
            }
        }))
        .await;
        (kernels.len(), cancelled)
    }

    /// [`KernelManager::end_user`] for every owner of a kernel or a queued
    /// start who was deactivated since (by `lab user deactivate`, which
    /// writes the database, not to this process).
    async fn end_deactivated(self: &Arc<Self>) {
        let mut owners: Vec<String> = self.all().iter().map(|k| k.owner()).collect();
        owners.extend(self.starts.starts().iter().map(|s| s.user.name.clone()));
        if owners.is_empty() {
            return;
        }
        owners.sort();
        owners.dedup();
        match self
            .store
            .deactivated_among(owners.iter().map(String::as_str))
        {
            Ok(names) => {
                for name in names {
                    let (kernels, starts) = self.end_user(&name).await;
                    tracing::info!(user = %name, kernels, starts, "ended a deactivated user's kernels");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot check for deactivated users"),
        }
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

    /// A new process for the kernel, under the same id, owner and GPUs.
    pub async fn restart(&self, kernel: &Arc<Kernel>) -> Result<(), KernelError> {
        let owner = kernel.owner();
        let group = self.store.user(&owner).ok().flatten().and_then(|u| u.group);
        self.supervisor
            .restart(kernel, group, self.users_root.join(&owner))
            .await?;
        self.store.save_kernel(&row_of(kernel))?;
        Ok(())
    }
}

/// A kernel's record in the store.
pub(super) fn row_of(kernel: &Kernel) -> KernelRow {
    let endpoint = kernel.current_endpoint();
    KernelRow {
        id: kernel.id,
        owner: kernel.owner(),
        spec: kernel.spec.clone(),
        connection: serde_json::to_string(&endpoint.connection).unwrap_or_default(),
        locator: serde_json::to_string(&endpoint.locator).unwrap_or_default(),
        created: crate::timefmt::iso(kernel.created),
        resources: kernel
            .grant()
            .and_then(|g| serde_json::to_string(&g).ok())
            .unwrap_or_default(),
    }
}
