//! The gateway's side of admission: the one [`Scheduler`] behind a mutex,
//! the quotas in SQLite, and the usage ledger.
//!
//! Every decision goes through [`Scheduling`], so concurrent starts are
//! decided one at a time (no overshoot), every admitted kernel gets a ledger
//! row when it starts holding resources and has it closed when it stops, and
//! quotas edited by `lab quota …` in another process reach the running
//! server (it polls the settings' version).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

use scheduler::Scheduler;
use scheduler::admission::{Decision, Event, Grant, Millis, Request, Snapshot, Ticket, Tuning};
use scheduler::inventory::{Cluster, GpuMonitor, GpuUse};
use scheduler::quota::{DEFAULT_GROUP, QuotaConfig};

use crate::store::{Store, UsageRow};

/// The settings key the quotas are stored under (as JSON).
pub const QUOTAS_KEY: &str = "quotas";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis().max(0) as Millis
}

pub use crate::config::RoleLimits;

/// Who a request is for, kept until the kernel is admitted, for the ledger.
#[derive(Debug, Clone)]
struct Owner {
    user: String,
    group: String,
    spec: String,
    cpus: f64,
}

pub struct Scheduling {
    sched: Mutex<Scheduler>,
    owners: Mutex<HashMap<uuid::Uuid, Owner>>,
    store: Store,
    quota_version: AtomicI64,
    pub roles: RoleLimits,
    /// Live utilisation of real GPUs (NVML), for ops and `/metrics`.
    monitor: GpuMonitor,
}

/// Why quotas could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The quotas given are inconsistent (a client's mistake).
    #[error("{0}")]
    Invalid(String),
    #[error("stored quotas are unreadable: {0}")]
    Unreadable(#[source] serde_json::Error),
    #[error("cannot encode quotas: {0}")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Scheduling {
    /// Admission over `cluster`, with the quotas stored in the database.
    pub fn new(
        cluster: Cluster,
        store: Store,
        tuning: Tuning,
        roles: RoleLimits,
    ) -> Result<Self, QuotaError> {
        let (quotas, version) = match store.setting(QUOTAS_KEY)? {
            Some((json, v)) => (
                serde_json::from_str(&json).map_err(QuotaError::Unreadable)?,
                v,
            ),
            None => (QuotaConfig::default(), 0),
        };
        Ok(Scheduling {
            sched: Mutex::new(Scheduler::new(cluster, quotas, tuning)),
            owners: Mutex::new(HashMap::new()),
            store,
            quota_version: AtomicI64::new(version),
            roles,
            monitor: GpuMonitor::none(),
        })
    }

    /// Reads live utilisation through `monitor`.
    pub fn with_monitor(mut self, monitor: GpuMonitor) -> Self {
        self.monitor = monitor;
        self
    }

    /// How busy each real GPU is now; empty without NVML.
    pub fn gpu_use(&self) -> Vec<GpuUse> {
        self.monitor.read()
    }

    /// Admission over `cluster` with no quotas (when the stored ones are unreadable).
    pub fn fresh(cluster: Cluster, store: Store) -> Self {
        Scheduling {
            sched: Mutex::new(Scheduler::new(
                cluster,
                QuotaConfig::default(),
                Tuning::default(),
            )),
            owners: Mutex::new(HashMap::new()),
            store,
            quota_version: AtomicI64::new(0),
            roles: RoleLimits::default(),
            monitor: GpuMonitor::none(),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Scheduler> {
        self.sched.lock()
    }

    pub fn cluster(&self) -> Cluster {
        self.lock().cluster().clone()
    }

    /// The group a user's requests count against.
    pub fn group_of(&self, group: Option<&str>) -> String {
        match group {
            Some(g) if self.lock().quotas().group(g).is_some() => g.to_owned(),
            _ => DEFAULT_GROUP.to_owned(),
        }
    }

    /// Decides a start. Ledger rows open for whatever was admitted.
    pub fn request(
        &self,
        req: Request,
        spec: &str,
        cpus: f64,
        now: Millis,
    ) -> (Decision, Vec<Event>) {
        let owner = Owner {
            user: req.user.clone(),
            group: self.group_of(req.group.as_deref()),
            spec: spec.to_owned(),
            cpus,
        };
        let kernel = req.kernel;
        self.owners.lock().insert(kernel, owner);
        let (decision, events) = self.lock().request(req, now);
        match &decision {
            Decision::Admitted(grant) => self.opened(kernel, grant, now),
            Decision::Queued(_) => {}
            Decision::Refused(_) => {
                self.owners.lock().remove(&kernel);
            }
        }
        self.record(&events, now);
        (decision, events)
    }

    fn opened(&self, kernel: uuid::Uuid, grant: &Grant, now: Millis) {
        let owner = self.owners.lock().get(&kernel).cloned();
        let Some(owner) = owner else { return };
        let row = UsageRow {
            kernel_id: kernel,
            user: owner.user,
            group: owner.group,
            spec: owner.spec,
            model: grant.model.clone(),
            gpus: grant.devices.len() as u32,
            cpus: owner.cpus,
            started: now,
            ended: None,
        };
        if let Err(e) = self.store.ledger_start(&row) {
            tracing::error!(kernel_id = %kernel, error = %e, "cannot record usage");
        }
    }

    fn record(&self, events: &[Event], now: Millis) {
        for e in events {
            match e {
                Event::Admitted { kernel, grant } => self.opened(*kernel, grant, now),
                Event::Refused { kernel, .. } => {
                    self.owners.lock().remove(kernel);
                }
                Event::Reclaim { .. } => {}
            }
        }
    }

    /// A kernel ended or a queued start was cancelled. Idempotent.
    pub fn release(&self, kernel: uuid::Uuid, now: Millis) -> Vec<Event> {
        let events = self.lock().release(kernel, now);
        self.owners.lock().remove(&kernel);
        if let Err(e) = self.store.ledger_end(kernel, now) {
            tracing::error!(kernel_id = %kernel, error = %e, "cannot close usage");
        }
        self.record(&events, now);
        events
    }

    /// Serves the queue again (starvation ages with time).
    pub fn dispatch(&self, now: Millis) -> Vec<Event> {
        let events = self.lock().dispatch(now);
        self.record(&events, now);
        events
    }

    pub fn ticket(&self, kernel: uuid::Uuid, now: Millis) -> Option<Ticket> {
        self.lock().ticket(kernel, now)
    }

    pub fn grant_of(&self, kernel: uuid::Uuid) -> Option<Grant> {
        self.lock().grant_of(kernel)
    }

    pub fn snapshot(&self, now: Millis) -> Snapshot {
        self.lock().snapshot(now)
    }

    pub fn quotas(&self) -> QuotaConfig {
        self.lock().quotas().clone()
    }

    /// Re-installs a re-attached kernel's allocation.
    pub fn restore(
        &self,
        kernel: uuid::Uuid,
        user: &str,
        group: Option<&str>,
        grant: &Grant,
        since: Millis,
    ) {
        if !self.lock().restore(kernel, user, group, grant, since) {
            tracing::warn!(kernel_id = %kernel, devices = ?grant.devices,
                "a re-attached kernel's GPUs are no longer in the inventory; it is accounted without them");
        }
    }

    /// Stores new quotas and applies them.
    pub fn set_quotas(&self, quotas: QuotaConfig, now: Millis) -> Result<Vec<Event>, QuotaError> {
        quotas
            .validate()
            .map_err(|e| QuotaError::Invalid(e.to_string()))?;
        let json = serde_json::to_string(&quotas).map_err(QuotaError::Encode)?;
        let mut sched = self.lock();
        let version = self.store.set_setting(QUOTAS_KEY, &json)?;
        self.quota_version.store(version, Ordering::SeqCst);
        let events = sched.set_quotas(quotas, now);
        drop(sched);
        self.record(&events, now);
        Ok(events)
    }

    /// Applies quotas another process (`lab quota import`) stored.
    pub fn reload(&self, now: Millis) -> Vec<Event> {
        let Ok(Some((json, version))) = self.store.setting(QUOTAS_KEY) else {
            return Vec::new();
        };
        if version == self.quota_version.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let quotas: QuotaConfig = match serde_json::from_str(&json) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "stored quotas are unreadable; keeping the current ones");
                return Vec::new();
            }
        };
        tracing::info!(version, "quotas changed; applying them");
        self.quota_version.store(version, Ordering::SeqCst);
        let events = self.lock().set_quotas(quotas, now);
        self.record(&events, now);
        events
    }

    /// Seeds each user's GPU-hour budget with what the ledger holds for the
    /// current period, so a restart does not reset budgets.
    pub fn seed_budgets(&self, users: &[crate::store::User], now: Millis) {
        let month_start = now.saturating_sub(32 * 24 * 3600 * 1000);
        let Ok(rows) = self.store.usage_between(month_start, now) else {
            return;
        };
        let mut sched = self.lock();
        for u in users {
            let group = match u.group.as_deref() {
                Some(g) if sched.quotas().group(g).is_some() => g.to_owned(),
                _ => DEFAULT_GROUP.to_owned(),
            };
            let period = sched
                .user_limits(&u.name, &group)
                .period
                .unwrap_or_default();
            let (start, _) = scheduler::admission::period_bounds(period, now);
            let used: f64 = rows
                .iter()
                .filter(|r| r.user == u.name)
                .filter_map(|r| {
                    let end = r.ended?;
                    Some(f64::from(r.gpus) * end.saturating_sub(r.started.max(start)) as f64)
                })
                .sum();
            if used > 0.0 {
                sched.seed_usage(&u.name, used, start);
            }
        }
    }
}
