//! One watch for all the kernel pods this gateway owns, mirrored into a
//! cache: launches wait on it, liveness checks and adoption read it, so no
//! check calls the API server. The watcher relists by itself when the
//! server says its resourceVersion is gone (410).
//!
//! Only the mirror; what a pod's state means is [`super::state`]'s job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;

use super::pod::OWNED_SELECTOR;

/// A pod's `(namespace, name)`.
pub(super) type PodKey = (String, String);

/// The pods we own, mirrored by the watcher.
#[derive(Default)]
pub(super) struct PodCache {
    pods: Mutex<HashMap<PodKey, Pod>>,
    /// Bumped on every change; `None` until the first full list.
    generation: tokio::sync::watch::Sender<Option<u64>>,
}

impl PodCache {
    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.lock()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// What `f` picks from each cached pod.
    pub(super) fn pick<T>(&self, f: impl FnMut((&PodKey, &Pod)) -> Option<T>) -> Vec<T> {
        self.lock().iter().filter_map(f).collect()
    }

    /// Wakes on every change of the cache.
    pub(super) fn changes(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.generation.subscribe()
    }

    pub(super) fn is_synced(&self) -> bool {
        self.generation.borrow().is_some()
    }

    /// Waits until the watcher has listed the pods once.
    pub(super) async fn synced(&self, within: Duration) -> bool {
        let mut rx = self.changes();
        tokio::time::timeout(within, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits (up to `within`) until the pod is gone from the cache; whether it is.
    pub(super) async fn gone(&self, namespace: &str, name: &str, within: Duration) -> bool {
        let mut rx = self.changes();
        let gone = async {
            while self.get(namespace, name).is_some() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(within, gone).await.is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PodKey, Pod>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.generation
            .send_modify(|g| *g = Some(g.map_or(0, |n| n.wrapping_add(1))));
    }
}

fn key_of(p: &Pod) -> PodKey {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// Mirrors the owned pods into `cache`, for as long as the backend lives.
pub(super) async fn mirror(api: Api<Pod>, cache: Arc<PodCache>) {
    let config = watcher::Config::default().labels(OWNED_SELECTOR);
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut fresh: HashMap<PodKey, Pod> = HashMap::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => fresh.clear(),
            Ok(watcher::Event::InitApply(p)) => {
                fresh.insert(key_of(&p), p);
            }
            Ok(watcher::Event::InitDone) => {
                *cache.lock() = std::mem::take(&mut fresh);
                cache.bump();
            }
            Ok(watcher::Event::Apply(p)) => {
                cache.lock().insert(key_of(&p), p);
                cache.bump();
            }
            Ok(watcher::Event::Delete(p)) => {
                cache.lock().remove(&key_of(&p));
                cache.bump();
            }
            Err(e) => tracing::warn!(error = %e, "kernel pod watch: will retry"),
        }
    }
}
