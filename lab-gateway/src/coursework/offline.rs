//! One notebook's code cells run in a fresh, offline kernel, in a scratch
//! folder that holds only what the run may read, removed afterwards.
//! Gradings and validations (here) and code submissions (`competitions`)
//! all run this way.
//!
//! The kernel's owner is a user of the run's own with a dotted name, which
//! no person can have (`.grading-ID`, `.compete-ID-ATTEMPT`): its folder
//! `DATA/users/NAME` is the scratch, all the sandbox lets the kernel
//! touch. The kernel starts through the scheduler (admission, quotas, the
//! fair queue) and never comes from the warm pool; it has no network and
//! a memory limit, and it is killed once its cells have run. A start still
//! queued after the run's admission wait is cancelled, so no kernel
//! launches later for nobody.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::execute::{self, CellRun, Limits};
use crate::kernels::{KernelManager, ResourceRequest, Restrictions, StartRequest};
use crate::store::User;

/// What one run is, beyond its cells.
pub struct Offline<'a> {
    /// The run's own user (a dotted name, see the module's doc).
    pub user: &'a User,
    /// The kernelspec.
    pub kernel: &'a str,
    pub memory_bytes: u64,
    /// GPUs, through the quotas like anyone's; none when `None`.
    pub gpus: Option<u32>,
    /// Where in the scratch the kernel starts (the notebook's folder);
    /// the scratch's top when `None`.
    pub folder: Option<PathBuf>,
    pub limits: Limits,
    /// How long the kernel may wait for admission (a GPU, the quotas).
    pub admission_wait: Duration,
    /// Folders the kernel reads and never writes (a code run's staged
    /// competition files), beside its scratch.
    pub read_only: Vec<launch::ReadOnlyMount>,
}

/// What a kernel's start may take on top of its cells' time before a pod
/// backend's deadline ends it (`LaunchSpec::deadline`).
const START_ALLOWANCE: Duration = Duration::from_secs(10 * 60);

/// What a run did.
pub struct Ran<T> {
    /// Each cell's run (index in the notebook).
    pub runs: Vec<(usize, CellRun)>,
    /// What `collect` read from the scratch.
    pub collected: T,
    /// The cells' own time, from the first request to the last reply.
    pub took: Duration,
    /// iopub messages the gateway missed (its fan-out dropped them): the
    /// outputs are incomplete.
    pub lost: u64,
}

/// Runs `cells` (index in the notebook, code) as `run` says. `stage` fills
/// the empty scratch first; `collect` reads what the run left there before
/// it is removed. `Err` is the platform's failure (staging, no kernel): the
/// run says nothing of the notebook and may be tried again.
pub async fn run<S, C, T>(
    kernels: &Arc<KernelManager>,
    users_root: &Path,
    run: Offline<'_>,
    cells: &[(usize, String)],
    stage: S,
    collect: C,
) -> Result<Ran<T>, String>
where
    S: FnOnce(&Path) -> Result<(), String> + Send + 'static,
    C: FnOnce(&Path) -> T + Send + 'static,
    T: Send + 'static,
{
    let scratch = users_root.join(&run.user.name);
    let staged = {
        let scratch = scratch.clone();
        let folder = run.folder.clone();
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
            if let Some(folder) = folder {
                std::fs::create_dir_all(scratch.join(folder)).map_err(|e| e.to_string())?;
            }
            stage(&scratch)
        })
        .await
    };
    match staged {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            remove(scratch).await;
            return Err(format!("cannot prepare the run's folder: {e}"));
        }
        Err(e) => return Err(format!("preparing the run's folder: {e}")),
    }
    let request = StartRequest {
        name: Some(run.kernel.to_owned()),
        env: BTreeMap::new(),
        resources: run.gpus.map(|gpus| ResourceRequest {
            gpus: Some(gpus),
            ..Default::default()
        }),
        fresh: true,
        restrictions: Restrictions {
            offline: true,
            memory_limit: Some(run.memory_bytes),
            // The cells' time and a start's (an image pull included): past
            // it, a pod backend's cluster ends the kernel itself.
            deadline: Some(run.limits.total_timeout + START_ALLOWANCE),
            read_only: run.read_only.clone(),
        },
        folder: run.folder.clone(),
    };
    let kernel = match kernels
        .start_offline(run.user, request, run.admission_wait)
        .await
    {
        Ok(k) => k,
        Err(e) => {
            remove(scratch).await;
            return Err(format!("cannot start a kernel for the run: {e}"));
        }
    };
    let started = tokio::time::Instant::now();
    let runs = execute::run_cells(kernels, &kernel, cells, run.limits).await;
    let took = started.elapsed();
    // Its outputs are in: the kernel is killed, not asked to stop.
    if let Err(e) = kernels.kill(&kernel).await {
        tracing::warn!(kernel_id = %kernel.id, error = %e, "a run's kernel did not shut down cleanly");
    }
    let collected = {
        let scratch = scratch.clone();
        tokio::task::spawn_blocking(move || collect(&scratch)).await
    };
    remove(scratch).await;
    let collected = collected.map_err(|e| format!("reading what the run left: {e}"))?;
    Ok(Ran {
        runs: runs.runs,
        collected,
        took,
        lost: runs.lost,
    })
}

async fn remove(scratch: PathBuf) {
    let gone = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&scratch)).await;
    if let Ok(Err(e)) = gone {
        tracing::debug!(error = %e, "a run's scratch folder was not removed");
    }
}
