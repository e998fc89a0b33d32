//! What a user's kernels need beside their pods, made once per gateway
//! process: in per-user mode their namespace with its two NetworkPolicies
//! (the kernels'; the offline kernels', no egress) and
//! (with Kueue) their group's LocalQueue; their notebooks PVC where one is
//! configured. 409 AlreadyExists is fine: another gateway, or an older one,
//! made it.

use std::collections::HashSet;

use parking_lot::Mutex;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::config::KubeConfig;
use super::error::KubeFailure;
use super::pod;

/// What this process already made (namespaces, policies, queues, PVCs).
#[derive(Default)]
pub(super) struct Prepared {
    done: Mutex<HashSet<String>>,
}

impl Prepared {
    /// What a user's kernels need beside the pod, created once per gateway
    /// process (409 AlreadyExists is fine): in per-user mode the namespace,
    /// its two NetworkPolicies and (with Kueue) the group's LocalQueue; the
    /// notebooks PVC where one is configured.
    pub(super) async fn prepare(
        &self,
        client: &kube::Client,
        config: &KubeConfig,
        namespace: &str,
        user: &str,
        group: Option<&str>,
        say: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), KubeFailure> {
        let created = |r: Result<(), kube::Error>| match r {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(KubeFailure::from_api(e)),
        };
        let post = PostParams::default();
        let per_user = config.namespace_per_user.is_some();
        // Marked done only once both policies are in place, so a start
        // that comes meanwhile makes sure of them itself (409, patch)
        // rather than creating its pod before they exist.
        let namespace_done = format!("namespace {namespace}");
        if per_user && !self.is_done(&namespace_done) {
            let ns = pod::build_namespace(namespace, user);
            let r = Api::<Namespace>::all(client.clone())
                .create(&post, &ns)
                .await
                .map(drop);
            if created(r)? {
                say(format!("created namespace {namespace}"));
            }
            // Both before any pod: without the offline policy an offline
            // pod is selected by no policy (it may send anywhere), and
            // under an older kernels' policy it gets DNS and the mirrors.
            let policies = Api::<NetworkPolicy>::namespaced(client.clone(), namespace);
            for policy in pod::build_network_policies(namespace, &config.namespace, config) {
                let r = policies.create(&post, &policy).await.map(drop);
                if !created(r)? {
                    // A namespace made by an older gateway, or with other
                    // mirrors: its policy becomes this one (a merge patch
                    // replaces the lists whole, and adds the kernels'
                    // policy's match on the offline label).
                    policies
                        .patch(
                            policy.metadata.name.as_deref().unwrap_or_default(),
                            &PatchParams::default(),
                            &Patch::Merge(&policy),
                        )
                        .await
                        .map_err(KubeFailure::from_api)?;
                }
            }
            self.done.lock().insert(namespace_done);
        }
        if per_user
            && config.kueue
            && let Some(group) = group
            && self.first_time(format!("localqueue {namespace}/{group}"))
        {
            let gvk = kube::api::GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta1", "LocalQueue");
            let resource = kube::api::ApiResource::from_gvk(&gvk);
            let queue: kube::api::DynamicObject =
                serde_json::from_value(pod::build_local_queue(namespace, group))
                    .map_err(|e| KubeFailure::Api(e.to_string()))?;
            let r = Api::<kube::api::DynamicObject>::namespaced_with(
                client.clone(),
                namespace,
                &resource,
            )
            .create(&post, &queue)
            .await
            .map(drop);
            created(r)?;
        }
        if let Some(pvc) = pod::build_notebooks_pvc(config, namespace, user)
            && self.first_time(format!(
                "pvc {namespace}/{}",
                pvc.metadata.name.as_deref().unwrap_or_default()
            ))
        {
            let r = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
                .create(&post, &pvc)
                .await
                .map(drop);
            if created(r)? {
                say(format!(
                    "created the notebooks volume {}",
                    pvc.metadata.name.as_deref().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    /// Whether `what` has been made by this process.
    fn is_done(&self, what: &str) -> bool {
        self.done.lock().contains(what)
    }

    /// Whether `what` is being prepared for the first time by this process.
    fn first_time(&self, what: String) -> bool {
        self.done.lock().insert(what)
    }

    /// Forgets what was made, so the next start makes sure of it again
    /// (after a failure, another start may succeed where this one failed).
    pub(super) fn forget(&self) {
        self.done.lock().clear();
    }
}
