//! The warm pool: ready kernels, owned by nobody yet, so a start answers at once.
//!
//! Only kernels that can take on their user's folder after starting qualify:
//! academy-candle, whose `:cd` the pool sends at handover. A pooled kernel is
//! launched under its own id and keeps it: a start that takes one is asked
//! of admission under that id, once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::kernel::Kernel;
use super::supervisor::{LaunchRequest, Supervisor};
use crate::kernel_client;
use crate::wire::Channel;

#[derive(Default)]
pub struct Pool {
    sizes: BTreeMap<String, usize>,
    ready: Mutex<HashMap<String, Vec<Arc<Kernel>>>>,
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

    /// How many ready kernels wait, by spec.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let ready = self.ready.lock();
        self.sizes
            .keys()
            .map(|k| (k.clone(), ready.get(k).map_or(0, Vec::len)))
            .collect()
    }

    /// Takes a ready kernel of `spec`, if one waits.
    pub fn take(&self, spec: &str) -> Option<Arc<Kernel>> {
        self.ready.lock().get_mut(spec)?.pop()
    }

    /// Puts back a kernel taken but not handed over (its start was refused).
    pub fn put_back(&self, kernel: Arc<Kernel>) {
        self.ready
            .lock()
            .entry(kernel.spec.clone())
            .or_default()
            .push(kernel);
    }

    /// Starts kernels until every pool is full. Call it in a spawned task.
    pub async fn fill(&self, supervisor: &Supervisor, pool_dir: &Path) {
        let closed = self.closed.lock().await;
        if *closed {
            return;
        }
        for (spec, want) in &self.sizes {
            while self.ready.lock().get(spec).map_or(0, Vec::len) < *want {
                let launched = supervisor
                    .launch(LaunchRequest {
                        id: uuid::Uuid::new_v4(),
                        user: "",
                        group: None,
                        spec,
                        env: &BTreeMap::new(),
                        cwd: pool_dir.to_owned(),
                        workdir: None,
                        grant: None,
                        progress: None,
                        restrictions: Default::default(),
                    })
                    .await;
                match launched {
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
        let pooled: Vec<Arc<Kernel>> = self.ready.lock().drain().flat_map(|(_, v)| v).collect();
        for k in pooled {
            supervisor.stop(&k).await;
        }
    }
}

/// Hands a pooled kernel to `user`: it moves to their folder (`cwd`), or
/// to `workdir` in it, and becomes theirs. `false` when the kernel did not
/// take the folder; the caller then stops it.
pub async fn hand_over(kernel: &Kernel, user: &str, cwd: &Path, workdir: Option<&Path>) -> bool {
    let endpoint = kernel.current_endpoint();
    let into = workdir
        .filter(|w| w.starts_with(cwd) && w.is_dir())
        .unwrap_or(cwd);
    let cd = kernel_client::silent_execute(format!(":cd {}", into.display()));
    let reply = kernel_client::request(
        &endpoint.connection,
        Channel::Shell,
        cd,
        Duration::from_secs(5),
    )
    .await;
    if !reply.as_ref().is_some_and(kernel_client::reply_ok) {
        tracing::warn!(kernel_id = %kernel.id, "a pooled kernel did not take its user's folder");
        return false;
    }
    kernel.set_owner(user);
    kernel.set_folder((into != cwd).then(|| into.to_owned()));
    true
}
