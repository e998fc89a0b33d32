//! The warm pool: kernels started before anyone owns them, so a start
//! answers at once.
//!
//! A pooled kernel has loaded and waits (one thread, nothing of any user's
//! open) for its handover: at a start, the
//! gateway sends it what a cold launch of that start would have begun with
//! (its user's folder, environment, limits, and under `--sandbox` the same
//! confinement), and the kernel applies it to itself before it starts its
//! runtime (the `handover` crate; `launch::local`'s `pooled`). So a pooled
//! kernel is its user's exactly as a cold one is, sandbox included. Only
//! kernels that speak the launch channel (the academy kernels) qualify.
//! A pooled kernel is launched under its own id and keeps it: a start that
//! takes one is asked of admission under that id, once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use launch::Launched;
use launch::launcher::KernelSignal;
use parking_lot::Mutex;

use super::error::StartError;
use super::kernel::Kernel;
use super::supervisor::{LaunchRequest, Supervisor};

/// A kernel started into the warm pool: its process waits for the user a
/// start hands it to ([`Supervisor::hand_over`]).
#[derive(Debug, Clone)]
pub struct Prespawned {
    pub id: uuid::Uuid,
    pub spec: String,
    launched: Launched,
}

#[derive(Default)]
pub struct Pool {
    sizes: BTreeMap<String, usize>,
    ready: Mutex<HashMap<String, Vec<Prespawned>>>,
    /// One fill at a time; none after `close`.
    closed: tokio::sync::Mutex<bool>,
}

impl Pool {
    pub fn new(sizes: BTreeMap<String, usize>) -> Self {
        Pool {
            sizes,
            ..Default::default()
        }
    }

    /// How many kernels wait, by spec.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let ready = self.ready.lock();
        self.sizes
            .keys()
            .map(|k| (k.clone(), ready.get(k).map_or(0, Vec::len)))
            .collect()
    }

    /// Takes a waiting kernel of `spec`, if there is one.
    pub fn take(&self, spec: &str) -> Option<Prespawned> {
        self.ready.lock().get_mut(spec)?.pop()
    }

    /// Puts back a kernel taken but not handed over (its start was refused).
    pub fn put_back(&self, kernel: Prespawned) {
        self.ready
            .lock()
            .entry(kernel.spec.clone())
            .or_default()
            .push(kernel);
    }

    /// Starts kernels until every pool is full, after dropping the ones
    /// whose process has died. Call it in a spawned task.
    pub async fn fill(&self, supervisor: &Supervisor, pool_dir: &Path) {
        let closed = self.closed.lock().await;
        if *closed {
            return;
        }
        let waiting: Vec<Prespawned> = self.ready.lock().drain().flat_map(|(_, v)| v).collect();
        for k in waiting {
            if supervisor.is_waiting(&k).await {
                self.put_back(k);
            } else {
                tracing::warn!(kernel_id = %k.id, spec = %k.spec, "warm pool: a waiting kernel died");
                supervisor.discard(&k).await;
            }
        }
        for (spec, want) in &self.sizes {
            while self.ready.lock().get(spec).map_or(0, Vec::len) < *want {
                match supervisor.prespawn(spec, pool_dir.to_owned()).await {
                    Ok(k) => self.put_back(k),
                    Err(e) => {
                        tracing::warn!(%spec, error = %e, "warm pool: a prespawn failed");
                        break;
                    }
                }
            }
        }
    }

    /// Stops the pooled kernels (they are not recorded, so a restarted
    /// gateway could not re-attach them), and any fill from now on.
    pub async fn close(&self, supervisor: &Supervisor) {
        // Waits for a fill in progress.
        *self.closed.lock().await = true;
        let pooled: Vec<Prespawned> = self.ready.lock().drain().flat_map(|(_, v)| v).collect();
        for k in pooled {
            supervisor.discard(&k).await;
        }
    }
}

impl Supervisor {
    /// Starts a kernel of `spec` into the warm pool, in `pool_dir`, owned
    /// by nobody; returns once it waits for its handover.
    pub async fn prespawn(&self, spec: &str, pool_dir: PathBuf) -> Result<Prespawned, StartError> {
        let id = uuid::Uuid::new_v4();
        let no_env = BTreeMap::new();
        let launch = self.launch_spec(&LaunchRequest {
            id,
            user: "",
            group: None,
            spec,
            env: &no_env,
            cwd: pool_dir,
            workdir: None,
            grant: None,
            progress: None,
            restrictions: Default::default(),
        })?;
        let launched = self.launcher.prespawn(launch).await.map_err(|e| {
            self.metrics.launch_failed("prespawn", e.metric_label());
            StartError::Launch {
                spec: spec.to_owned(),
                source: Arc::new(e),
            }
        })?;
        Ok(Prespawned {
            id,
            spec: spec.to_owned(),
            launched,
        })
    }

    /// Makes a prespawned kernel the one `r` asks for (`r.id` is its id):
    /// it is sent what a cold launch of `r` would have started with, and
    /// is watched from when it listens.
    pub async fn hand_over(
        &self,
        pooled: &Prespawned,
        r: LaunchRequest<'_>,
    ) -> Result<Arc<Kernel>, StartError> {
        let started = std::time::Instant::now();
        let launch = self.launch_spec(&r)?;
        let spec = r.spec.to_owned();
        self.launcher.hand_over(launch).await.map_err(|e| {
            self.metrics.launch_failed("handover", e.metric_label());
            StartError::Launch {
                spec: spec.clone(),
                source: Arc::new(e),
            }
        })?;
        self.become_ready(&r, spec, &pooled.launched, started).await
    }

    /// Ends a prespawned kernel that will not be handed over.
    pub async fn discard(&self, pooled: &Prespawned) {
        if let Err(e) = self
            .launcher
            .signal(&pooled.launched.locator, KernelSignal::Kill)
            .await
        {
            tracing::debug!(kernel_id = %pooled.id, error = %e, "a pooled kernel was not killed");
        }
        self.launcher
            .cleanup(pooled.id, &pooled.launched.locator)
            .await;
    }

    /// Whether a prespawned kernel's process still runs.
    pub async fn is_waiting(&self, pooled: &Prespawned) -> bool {
        self.launcher.is_alive(&pooled.launched.locator).await
    }
}
