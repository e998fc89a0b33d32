//! One watch for all the kernel pods this gateway owns, mirrored by
//! kube-runtime's reflector into a store: launches wait on it, liveness
//! checks and adoption read it, so no check calls the API server. The
//! watcher relists by itself when the server says its resourceVersion is
//! gone (410), and the store swaps in a relist whole.
//!
//! Only the mirror, and a signal on each change so that waits wake up;
//! what a pod's state means is [`super::state`]'s job.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt as _, watcher};

use super::pod::OWNED_SELECTOR;

/// A pod's `(namespace, name)`.
pub(super) type PodKey = (String, String);

/// The pods we own, mirrored by the reflector.
pub(super) struct PodCache {
    store: Store<Pod>,
    /// Bumped after every change the store took in (a full list, an
    /// update, a deletion), so that waits on the store wake up.
    changed: tokio::sync::watch::Sender<u64>,
}

impl PodCache {
    /// An empty cache, and the writer [`mirror`] fills it with.
    pub(super) fn new() -> (Arc<PodCache>, Writer<Pod>) {
        let (store, writer) = reflector::store();
        let cache = PodCache {
            store,
            changed: tokio::sync::watch::Sender::new(0),
        };
        (Arc::new(cache), writer)
    }

    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<Pod> {
        let key = ObjectRef::new(name).within(namespace);
        self.store.get(&key).map(|p| Pod::clone(&p))
    }

    /// What `f` picks from each cached pod.
    pub(super) fn pick<T>(&self, mut f: impl FnMut((&PodKey, &Pod)) -> Option<T>) -> Vec<T> {
        self.store
            .state()
            .iter()
            .filter_map(|p| {
                let key = (
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                );
                f((&key, p))
            })
            .collect()
    }

    /// Wakes on every change of the cache.
    pub(super) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Whether the watch has listed the pods once.
    pub(super) fn is_synced(&self) -> bool {
        self.store
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok())
    }

    /// Waits (up to `within`) until the watch has listed the pods once.
    pub(super) async fn synced(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.store.wait_until_ready())
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
}

/// Mirrors the owned pods into `cache` through `writer`, for as long as the
/// backend lives.
pub(super) async fn mirror(api: Api<Pod>, writer: Writer<Pod>, cache: Arc<PodCache>) {
    let config = watcher::Config::default().labels(OWNED_SELECTOR);
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff().reflect(writer));
    while let Some(event) = stream.next().await {
        match event {
            // The store applied the event before yielding it. A relist
            // (Init, InitApply) is buffered until InitDone swaps it in.
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                cache.changed.send_modify(|n| *n = n.wrapping_add(1));
            }
            Err(e) => tracing::warn!(error = %e, "kernel pod watch: will retry"),
        }
    }
}
