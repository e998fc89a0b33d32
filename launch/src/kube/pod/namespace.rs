//! What a user's kernels need beside their pods: in per-user mode their
//! namespace (restricted Pod Security) with the NetworkPolicy that admits
//! only the gateway and sends only to DNS and the mirrors, their group's
//! Kueue LocalQueue, and their notebooks PVC. Pure functions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::*;
use crate::kube::config::KubeConfig;
use crate::kube::egress;

/// A user's namespace, when kernels get one each.
pub fn build_namespace(name: &str, user: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
                (LABEL_PART_OF.to_owned(), "academy-lab".to_owned()),
                (LABEL_USER.to_owned(), label_value(user)),
                (
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    "restricted".to_owned(),
                ),
            ])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The labels of the gateway's own pods (k8s/base/deployment.yaml).
pub fn gateway_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "academy-lab".to_owned()),
        (LABEL_COMPONENT.to_owned(), "gateway".to_owned()),
    ])
}

/// The name of the NetworkPolicy the gateway puts in each user namespace.
pub const USER_NETWORK_POLICY: &str = "academy-lab-kernels";

/// A user namespace's NetworkPolicy: as `k8s/base/networkpolicy.yaml` does
/// in the shared namespace, kernel pods accept traffic only from the
/// gateway (in its own namespace), and only on the kernel ports, and send
/// only DNS and to the mirrors of `config.egress` ([`egress`]).
pub fn build_network_policy(
    namespace: &str,
    gateway_namespace: &str,
    config: &KubeConfig,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(USER_NETWORK_POLICY.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
                (LABEL_PART_OF.to_owned(), "academy-lab".to_owned()),
            ])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (LABEL_NAME.to_owned(), "academy-lab".to_owned()),
                    (LABEL_COMPONENT.to_owned(), "kernel".to_owned()),
                ])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            egress: Some(egress::kernel_egress(&config.egress)),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            gateway_namespace.to_owned(),
                        )])),
                        ..Default::default()
                    }),
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(gateway_labels()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".into()),
                    port: Some(IntOrString::Int(i32::from(KERNEL_PORTS[0]))),
                    end_port: Some(i32::from(KERNEL_PORTS[4])),
                }]),
            }]),
        }),
    }
}

/// The Kueue LocalQueue of `group` in `namespace`: pods name it in
/// `kueue.x-k8s.io/queue-name`, and it feeds the group's ClusterQueue
/// (`lab k8s render-quotas` makes those).
pub fn build_local_queue(namespace: &str, group: &str) -> serde_json::Value {
    let name = dns_label(group, 63);
    serde_json::json!({
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "LocalQueue",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGER, LABEL_PART_OF: "academy-lab"},
        },
        "spec": {"clusterQueue": name},
    })
}

/// A user's notebooks PVC, created on demand (as JupyterHub's KubeSpawner
/// creates `claim-{username}`), and kept when their kernels go.
pub fn build_notebooks_pvc(
    config: &KubeConfig,
    namespace: &str,
    user: &str,
) -> Option<PersistentVolumeClaim> {
    let name = notebooks_pvc_name(config, user)?;
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
                (LABEL_PART_OF.to_owned(), "academy-lab".to_owned()),
                (LABEL_USER.to_owned(), label_value(user)),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: config.notebooks_storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(config.notebooks_pvc_size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}
