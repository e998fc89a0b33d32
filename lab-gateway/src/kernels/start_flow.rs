//! The path of one start, from the request to a running kernel.
//!
//! 1. The request is resolved (`resources`) and a [`Start`] is recorded in
//!    the starts map, before admission is asked, so whatever admission
//!    decides later finds it.
//! 2. Admission refuses (the start is forgotten), admits (the launch runs in
//!    its own task), or queues it for a GPU (recorded in the store, so a
//!    restarted gateway queues it again; admission's `Admitted` event later
//!    launches it).
//! 3. The launch takes the warm-pool kernel the start set aside, or has the
//!    supervisor start one, records it, and moves the start to running in
//!    one step with any reclaim that came meanwhile.
//!
//! A failure at any step is a [`StartError`] that reaches the client (now,
//! or through the start's state when it was already answered 202) and the
//! failure metric, labelled by its reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scheduler::admission::{Decision, Event, Grant, Request};
use tokio::sync::mpsc;

use super::error::StartError;
use super::kernel::{Kernel, resources_model};
use super::manager::{KernelManager, Started, row_of};
use super::notice::NoticeKind;
use super::resources::{self, StartRequest};
use super::starts::{Reclaim, Start, StartState};
use super::supervisor::{LaunchRequest, READY_TIMEOUT};
use crate::scheduling::now_ms;
use crate::store::User;

impl KernelManager {
    /// Starts a kernel: admitted at once and launched, or queued for a GPU
    /// (answered after `queue_wait` with its position), or refused.
    pub async fn start(
        self: &Arc<Self>,
        user: &User,
        req: StartRequest,
    ) -> Result<Started, StartError> {
        self.start_as(None, user, req, self.queue_wait).await
    }

    /// Starts a kernel and waits for it through the queue (sessions, which
    /// must answer with a running kernel).
    pub async fn start_running(
        self: &Arc<Self>,
        user: &User,
        req: StartRequest,
    ) -> Result<Arc<Kernel>, StartError> {
        match self.start(user, req).await? {
            Started::Running(k) => Ok(k),
            Started::Queued(s) => match s.wait(READY_TIMEOUT).await {
                StartState::Started(k) => Ok(k),
                StartState::Failed(why) => Err(why),
                _ => Err(StartError::StillQueued {
                    id: s.id,
                    position: self
                        .scheduling
                        .ticket(s.id, now_ms())
                        .map_or(0, |t| t.position),
                }),
            },
        }
    }

    /// Starts a kernel for work of the gateway's own (a grading, a code
    /// run), waiting through the queue for up to `wait`; past it the start
    /// is cancelled, so nothing launches later for nobody.
    pub async fn start_offline(
        self: &Arc<Self>,
        user: &User,
        req: StartRequest,
        wait: Duration,
    ) -> Result<Arc<Kernel>, StartError> {
        match self.start(user, req).await? {
            Started::Running(k) => Ok(k),
            Started::Queued(s) => match s.wait(wait).await {
                StartState::Started(k) => Ok(k),
                StartState::Failed(why) => Err(why),
                _ => {
                    let position = self
                        .scheduling
                        .ticket(s.id, now_ms())
                        .map_or(0, |t| t.position);
                    if self.cancel(&s) {
                        return Err(StartError::StillQueued { id: s.id, position });
                    }
                    // It is running already, its start about to say so.
                    match s.wait(Duration::from_secs(60)).await {
                        StartState::Started(k) => Ok(k),
                        StartState::Failed(why) => Err(why),
                        _ => Err(StartError::StillQueued { id: s.id, position }),
                    }
                }
            },
        }
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
                tracing::warn!(kernel_id = %row.id, "dropping a queued start whose user or request is gone");
                self.forget_queued(row.id);
                continue;
            };
            match self
                .start_as(Some(row.id), &user, req, Duration::ZERO)
                .await
            {
                Ok(_) => {
                    tracing::info!(kernel_id = %row.id, user = %user.name, "queued start restored")
                }
                Err(e) => {
                    tracing::warn!(kernel_id = %row.id, error = %e, "a queued start could not be restored");
                    self.forget_queued(row.id);
                }
            }
        }
    }

    async fn start_as(
        self: &Arc<Self>,
        id: Option<uuid::Uuid>,
        user: &User,
        req: StartRequest,
        queue_wait: Duration,
    ) -> Result<Started, StartError> {
        let specs = self.supervisor.specs();
        let spec_name = req
            .name
            .clone()
            .or_else(|| specs.default_name().map(str::to_owned))
            .ok_or(StartError::NoSpecs)?;
        let spec = specs
            .get(&spec_name)
            .ok_or_else(|| StartError::NoSuchSpec(spec_name.clone()))?;
        let lab_has_gpus = !self.scheduling.cluster().pools.is_empty();
        let resources = resources::resolve(&spec_name, Some(&spec.json), &req, lab_has_gpus)?;
        // A CPU start takes a waiting kernel from the pool, and the
        // kernel's id with it (its variables go with the handover). A GPU
        // start may queue, and would hold a pooled kernel meanwhile.
        let pooled = (id.is_none() && !req.fresh && resources.gpu_count() == 0)
            .then(|| self.pool.take(&spec_name))
            .flatten();
        let id = pooled
            .as_ref()
            .map(|k| k.id)
            .or(id)
            .unwrap_or_else(uuid::Uuid::new_v4);
        let start = Start::new(
            id,
            user,
            spec_name.clone(),
            req.env.clone(),
            resources,
            pooled,
            req.restrictions.clone(),
            req.folder.clone(),
        );
        // Recorded before admission is asked, so its later events find it.
        if !self.starts.wait(start.clone()) {
            self.return_pooled(&start);
            return Err(StartError::IdTaken(id));
        }
        let request = Request {
            kernel: id,
            user: user.name.clone(),
            group: user.group.clone(),
            gpus: start.resources.gpu_count(),
            model: start.resources.gpu_model.clone(),
            role_max_gpus: self.scheduling.roles.for_role(user.role),
        };
        let cpus = start.resources.cpus.unwrap_or(1.0);
        let (decision, events) = self.scheduling.request(request, &spec_name, cpus, now_ms());
        self.handle(events);
        match decision {
            Decision::Refused(refusal) => {
                self.starts.remove_start(&start);
                self.return_pooled(&start);
                Err(StartError::Refused(refusal))
            }
            Decision::Admitted(grant) => {
                // The launch goes on in its own task: a pod may wait minutes for
                // a node or an image, and a client that gives up must not abort
                // a launch half way and leave its process and GPUs behind.
                self.admitted(start.clone(), grant);
                match start.wait(self.answer_after).await {
                    StartState::Started(k) => Ok(Started::Running(k)),
                    StartState::Failed(why) => Err(why),
                    _ => Ok(Started::Queued(start)),
                }
            }
            Decision::Queued(ticket) => {
                tracing::info!(kernel_id = %id, user = %user.name, position = ticket.position,
                    waiting_for = %ticket.waiting_for, "kernel queued");
                self.remember_queued(&start, &req);
                // It may have been admitted (and even launched) meanwhile.
                match start.wait(queue_wait).await {
                    StartState::Started(k) => Ok(Started::Running(k)),
                    _ => Ok(Started::Queued(start)),
                }
            }
        }
    }

    /// Records a queued start, so a restarted gateway queues it again.
    fn remember_queued(&self, start: &Start, req: &StartRequest) {
        let row = crate::store::QueuedRow {
            id: start.id,
            owner: start.user.name.clone(),
            request: serde_json::to_string(&StartRequest {
                name: Some(start.spec.clone()),
                ..req.clone()
            })
            .unwrap_or_default(),
        };
        if let Err(e) = self.store.save_queued(&row) {
            tracing::warn!(kernel_id = %start.id, error = %e, "cannot record a queued start");
        }
    }

    /// Cancels a start that waits; `false` when it is no longer waiting (it
    /// runs now: the caller shuts the kernel down instead).
    ///
    /// A start not admitted yet gives its place in the queue back at once.
    /// One admitted is launching on its GPUs: its launch stops the kernel
    /// and gives them back once its process is gone.
    pub fn cancel(self: &Arc<Self>, start: &Start) -> bool {
        if !self.starts.remove_start(start) {
            return false;
        }
        self.forget_queued(start.id);
        start.finish(StartState::Cancelled);
        self.discard_pooled(start);
        if !start.is_admitted() {
            self.release(start.id);
        }
        true
    }

    /// Puts back the pool kernel a start set aside: only for a start refused
    /// at once, which admission never knew under that id.
    fn return_pooled(&self, start: &Start) {
        if let Some(k) = start.take_pooled() {
            self.pool.put_back(k);
        }
    }

    /// Stops the pool kernel a start set aside, if it still has it: its id
    /// was the start's, known to admission and to clients, so it is never
    /// handed to anyone else.
    fn discard_pooled(self: &Arc<Self>, start: &Start) {
        if let Some(k) = start.take_pooled() {
            let me = self.clone();
            tokio::spawn(async move {
                me.supervisor.discard(&k).await;
                me.fill_pool().await;
            });
        }
    }

    /// Admits a start and launches it in its own task (once, however often
    /// admission says so).
    pub(super) fn admitted(self: &Arc<Self>, start: Arc<Start>, grant: Grant) {
        if start.admit() {
            tokio::spawn(self.clone().launch(start, grant));
        }
    }

    /// Launches an admitted start and moves it to running.
    async fn launch(self: Arc<Self>, start: Arc<Start>, grant: Grant) {
        tracing::info!(kernel_id = %start.id, devices = ?grant.devices, "kernel admitted");
        let result = if self.starts.is_waiting(&start) {
            self.launch_admitted(&start, start.resources.sized(grant))
                .await
        } else {
            Err(StartError::Cancelled)
        };
        self.forget_queued(start.id);
        match result {
            Ok(kernel) => match self.starts.run(&start, kernel.clone()) {
                Ok(reclaim) => {
                    start.finish(StartState::Started(kernel.clone()));
                    // A reclaim that came while it launched applies now.
                    if let Some(r) = reclaim {
                        tokio::spawn(self.clone().reclaim(kernel.id, r));
                    }
                }
                Err(kernel) => {
                    tracing::info!(kernel_id = %start.id, "deleted while it started; stopping it");
                    if let Err(e) = self.shutdown(&kernel).await {
                        tracing::warn!(kernel_id = %start.id, error = %e, "cannot stop a cancelled start");
                    }
                }
            },
            // Cancelled before its process ran: nothing to stop, its GPUs go back.
            Err(StartError::Cancelled) => {
                tracing::info!(kernel_id = %start.id, "cancelled while it was being launched");
                self.release(start.id);
            }
            Err(e) => {
                tracing::warn!(kernel_id = %start.id, reason = e.reason(), error = %e, "an admitted kernel failed to start");
                if matches!(e, StartError::NotRecorded(_)) {
                    // The supervisor counts the failures of its own launches.
                    self.metrics.launch_failed(e.reason(), "");
                }
                self.starts.remove_start(&start);
                self.release(start.id);
                start.finish(StartState::Failed(e));
            }
        }
    }

    /// Launches an admitted start (from the warm pool when it set a kernel
    /// aside) and records it.
    async fn launch_admitted(
        self: &Arc<Self>,
        start: &Arc<Start>,
        grant: Grant,
    ) -> Result<Arc<Kernel>, StartError> {
        let cwd = self.users_root.join(&start.user.name);
        let workdir = start.folder.as_ref().map(|f| cwd.join(f));
        let kernel = match start.take_pooled() {
            Some(k) => {
                start.launching(resources_model(Some(&grant)));
                let handed = self
                    .supervisor
                    .hand_over(
                        &k,
                        LaunchRequest {
                            id: start.id,
                            user: &start.user.name,
                            group: start.user.group.clone(),
                            spec: &start.spec,
                            env: &start.env,
                            cwd: cwd.clone(),
                            workdir: workdir.clone(),
                            grant: Some(&grant),
                            progress: None,
                            restrictions: start.restrictions.clone(),
                        },
                    )
                    .await;
                // Refilled once this start has its kernel: a prespawn's exec
                // would take the CPU the handed-over kernel needs now.
                self.refill_pool();
                match handed {
                    Ok(kernel) => kernel,
                    Err(e) => {
                        self.supervisor.discard(&k).await;
                        // A death seen meanwhile gave the grant back: the
                        // start fails rather than run unadmitted.
                        if self.scheduling.grant_of(start.id).is_none() {
                            return Err(e);
                        }
                        // The start goes on, cold, under the same id.
                        tracing::warn!(kernel_id = %start.id, error = %e, "a pooled kernel was not handed over; starting one cold");
                        self.launch_cold(start, &grant, cwd, workdir).await?
                    }
                }
            }
            None => self.launch_cold(start, &grant, cwd, workdir).await?,
        };
        kernel.set_grant(Some(grant));
        if let Err(e) = self.store.save_kernel(&row_of(&kernel)) {
            tracing::error!(kernel_id = %kernel.id, error = %e, "cannot record a started kernel; stopping it");
            self.supervisor.stop_surely(&kernel).await;
            return Err(StartError::NotRecorded(Arc::new(e)));
        }
        Ok(kernel)
    }

    async fn launch_cold(
        &self,
        start: &Arc<Start>,
        grant: &Grant,
        cwd: PathBuf,
        workdir: Option<PathBuf>,
    ) -> Result<Arc<Kernel>, StartError> {
        start.launching(resources_model(Some(grant)));
        let (progress, mut said) = mpsc::unbounded_channel::<String>();
        let watched = Arc::downgrade(start);
        // Ends when the launch drops its sender.
        tokio::spawn(async move {
            while let Some(p) = said.recv().await {
                if let Some(s) = watched.upgrade() {
                    s.progress(p);
                }
            }
        });
        self.supervisor
            .launch(LaunchRequest {
                id: start.id,
                user: &start.user.name,
                group: start.user.group.clone(),
                spec: &start.spec,
                env: &start.env,
                cwd,
                workdir,
                grant: Some(grant),
                progress: Some(progress),
                restrictions: start.restrictions.clone(),
            })
            .await
    }

    fn refill_pool(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.fill_pool().await });
    }

    // ----- admission's events -----

    /// Acts on admission's events. Never blocks: launches and stops run in
    /// their own tasks.
    pub fn handle(self: &Arc<Self>, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Admitted { kernel, grant } => match self.starts.waiting(kernel) {
                    Some(s) => self.admitted(s, grant),
                    None => {
                        tracing::info!(kernel_id = %kernel, "admitted after it was cancelled; releasing its GPUs");
                        self.release(kernel);
                    }
                },
                Event::Reclaim {
                    kernel,
                    for_group,
                    deadline,
                } => {
                    let r = Reclaim {
                        for_group,
                        deadline,
                    };
                    tokio::spawn(self.clone().reclaim(kernel, r));
                }
                Event::Refused { kernel, refusal } => {
                    self.forget_queued(kernel);
                    if let Some(s) = self.starts.waiting(kernel) {
                        self.discard_pooled(&s);
                        s.finish(StartState::Failed(StartError::Refused(refusal)));
                    }
                }
            }
        }
    }

    /// Gives a kernel's GPUs back to admission and acts on what that lets start.
    pub(super) fn release(self: &Arc<Self>, kernel: uuid::Uuid) {
        let events = self.scheduling.release(kernel, now_ms());
        self.handle(events);
    }

    /// Drops a start's record once it left the queue.
    fn forget_queued(&self, kernel: uuid::Uuid) {
        if let Err(e) = self.store.delete_queued(kernel) {
            tracing::warn!(kernel_id = %kernel, error = %e, "cannot forget a queued start");
        }
    }

    /// Warns a kernel on a borrowed GPU, then stops it at the deadline; a
    /// kernel still launching is reclaimed as soon as it runs.
    async fn reclaim(self: Arc<Self>, id: uuid::Uuid, r: Reclaim) {
        let Some(kernel) = self.starts.reclaim(id, r.clone()) else {
            tracing::info!(kernel_id = %id, for_group = %r.for_group, "reclaim waits for the kernel to finish starting");
            return;
        };
        let left = r.deadline.saturating_sub(now_ms());
        let text = format!(
            "Academy Lab: this kernel runs on a GPU borrowed from group {}, which needs it back. \
             Save your work: the kernel stops in {} s.",
            r.for_group,
            left / 1000
        );
        tracing::info!(kernel_id = %id, for_group = %r.for_group, seconds = left / 1000, "reclaiming a borrowed GPU");
        kernel.notify(NoticeKind::Reclaim, &text, left / 1000).await;
        tokio::time::sleep(Duration::from_millis(left)).await;
        if let Err(e) = self.shutdown(&kernel).await {
            tracing::warn!(kernel_id = %id, error = %e, "reclaim: shutdown failed");
        }
    }
}
