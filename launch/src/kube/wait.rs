//! Waiting for a new kernel pod: on the watch's cache, until it is Ready
//! (its IP), failed (why), or too slow. Unschedulable counts as progress for
//! `unschedulable_timeout`, since a pod being deleted may free its GPU.

use super::cache::PodCache;
use super::config::KubeConfig;
use super::error::KubeFailure;
use super::state::{self, PodState};

/// Waits for the pod in the cache until it is ready or failed.
pub(super) async fn until_ready(
    cache: &PodCache,
    config: &KubeConfig,
    namespace: &str,
    name: &str,
    progress: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<String, KubeFailure> {
    let timeout = config.launch_timeout.0;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = cache.changes();
    let mut doing = "waiting for the API server's watch".to_owned();
    let mut unschedulable_since: Option<tokio::time::Instant> = None;
    loop {
        if let Some(pod) = cache.get(namespace, name) {
            let state = match state::interpret(&pod) {
                // The scheduler may yet find a node: a pod being deleted
                // frees its GPU, an autoscaler adds a node.
                PodState::Failed(KubeFailure::Unschedulable { message }) => {
                    let since = *unschedulable_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= config.unschedulable_timeout.0 {
                        return Err(KubeFailure::Unschedulable { message });
                    }
                    PodState::Waiting(format!("waiting for a node (Unschedulable): {message}"))
                }
                other => {
                    unschedulable_since = None;
                    other
                }
            };
            match state {
                PodState::Ready { ip } => return Ok(ip),
                PodState::Failed(f) => return Err(f),
                PodState::Waiting(now) => {
                    if now != doing {
                        tracing::info!(pod = name, "{now}");
                        if let Some(p) = progress {
                            let _ = p.send(now.clone());
                        }
                        doing = now;
                    }
                }
            }
        }
        // Look again when the Unschedulable patience runs out, change or not.
        let patience = unschedulable_since.map(|t| t + config.unschedulable_timeout.0);
        let wake = patience.map_or(deadline, |p| p.min(deadline));
        match tokio::time::timeout_at(wake, rx.changed()).await {
            Ok(Ok(())) => {}
            Err(_) if wake < deadline => {}
            Ok(Err(_)) | Err(_) => {
                return Err(KubeFailure::Timeout {
                    waited: timeout,
                    doing,
                });
            }
        }
    }
}
