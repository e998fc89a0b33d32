//! What a user's kernels need beside their pods: in per-user mode their
//! namespace (restricted Pod Security) with two NetworkPolicies, both
//! admitting only the gateway: the kernels', which sends only to DNS and
//! the mirrors, and the offline kernels', which sends nothing; their
//! group's Kueue LocalQueue, and their notebooks PVC. Pure functions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
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

/// The name of the kernels' NetworkPolicy, in each user namespace and
/// (k8s/base/networkpolicy.yaml) in the shared one.
pub const USER_NETWORK_POLICY: &str = "academy-lab-kernels";
/// The name of the offline kernels' NetworkPolicy (no egress at all),
/// beside [`USER_NETWORK_POLICY`].
pub const OFFLINE_NETWORK_POLICY: &str = "academy-lab-offline-kernels";

/// The kernel pods a kernel NetworkPolicy applies to: for the kernels'
/// policy those without [`LABEL_EGRESS`] (`DoesNotExist`), for the offline
/// policy those with it (`Exists`, whatever its value). The two
/// selectors split the kernel pods between them: a pod is never selected
/// by both (NetworkPolicies add up, so an offline pod the kernels' policy
/// selected would get its DNS and mirrors), nor by neither (a pod no
/// policy selects may send anywhere).
pub fn kernel_pod_selector(offline: bool) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([
            (LABEL_NAME.to_owned(), "academy-lab".to_owned()),
            (LABEL_COMPONENT.to_owned(), "kernel".to_owned()),
        ])),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: LABEL_EGRESS.to_owned(),
            operator: if offline { "Exists" } else { "DoesNotExist" }.to_owned(),
            values: None,
        }]),
    }
}

/// A user namespace's NetworkPolicy for ordinary kernels: as
/// `k8s/base/networkpolicy.yaml` does in the shared namespace, kernel pods
/// accept traffic only from the gateway (in its own namespace), and only
/// on the kernel ports, and send only DNS and to the mirrors of
/// `config.egress` ([`egress`]). It does not select offline pods.
pub fn build_network_policy(
    namespace: &str,
    gateway_namespace: &str,
    config: &KubeConfig,
) -> NetworkPolicy {
    kernel_policy(
        USER_NETWORK_POLICY,
        namespace,
        gateway_namespace,
        false,
        egress::kernel_egress(&config.egress),
    )
}

/// A user namespace's NetworkPolicy for offline kernels (grading): the
/// same ingress as [`build_network_policy`]'s, and no egress at all (an
/// empty list under `policyTypes` Egress): no DNS, which an answer cell
/// could otherwise use to carry hidden tests out in its queries, and no
/// mirror.
pub fn build_offline_network_policy(namespace: &str, gateway_namespace: &str) -> NetworkPolicy {
    kernel_policy(
        OFFLINE_NETWORK_POLICY,
        namespace,
        gateway_namespace,
        true,
        Vec::new(),
    )
}

/// Both kernel policies of a user namespace, the kernels' then the offline
/// kernels'.
pub fn build_network_policies(
    namespace: &str,
    gateway_namespace: &str,
    config: &KubeConfig,
) -> [NetworkPolicy; 2] {
    [
        build_network_policy(namespace, gateway_namespace, config),
        build_offline_network_policy(namespace, gateway_namespace),
    ]
}

/// Whether `selector` selects an object labelled `labels`, as the API
/// server matches label selectors: every `matchLabels` pair and every
/// `matchExpressions` requirement (`In`, `NotIn`, `Exists`,
/// `DoesNotExist`; any other operator matches nothing). The tests check
/// with it which policies select which pods.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|r| {
        let value = labels.get(&r.key);
        let listed = |v: &String| r.values.iter().flatten().any(|w| w == v);
        match r.operator.as_str() {
            "In" => value.is_some_and(listed),
            "NotIn" => !value.is_some_and(listed),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

fn kernel_policy(
    name: &str,
    namespace: &str,
    gateway_namespace: &str,
    offline: bool,
    egress: Vec<NetworkPolicyEgressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
                (LABEL_PART_OF.to_owned(), "academy-lab".to_owned()),
            ])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(kernel_pod_selector(offline)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            egress: Some(egress),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::pod::{KernelPod, build_pod};

    fn kernel_labels(offline: bool) -> BTreeMap<String, String> {
        let k = KernelPod {
            kernel_id: uuid::Uuid::nil(),
            user: ".grading-7".into(),
            group: Some("grading".into()),
            argv: vec!["k".into()],
            env: BTreeMap::new(),
            gpus: 0,
            gpu_model: None,
            cpu: None,
            memory: None,
            offline,
            work: None,
            start_in: None,
            read_only: Vec::new(),
            deadline_s: None,
        };
        build_pod(&KubeConfig::default(), &k)
            .metadata
            .labels
            .unwrap()
    }

    /// The names of the policies of `policies` that select `labels`.
    fn selecting(policies: &[NetworkPolicy], labels: &BTreeMap<String, String>) -> Vec<String> {
        policies
            .iter()
            .filter(|p| {
                selects(
                    p.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(),
                    labels,
                )
            })
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    /// Issue 15: NetworkPolicies add up, so an offline (grading) pod must
    /// be selected by the offline policy alone, which allows no egress,
    /// and an ordinary pod by the kernels' policy alone.
    #[test]
    fn each_kernel_pod_is_selected_by_exactly_one_kernel_policy() {
        let config = KubeConfig {
            egress: vec![
                egress::EgressRule::new("10.64.12.0/24".parse().unwrap(), vec![443]).unwrap(),
            ],
            ..KubeConfig::default()
        };
        let policies = build_network_policies("lab-x", "academy-lab", &config);
        let offline = kernel_labels(true);
        let ordinary = kernel_labels(false);
        assert_eq!(offline.get(LABEL_EGRESS).map(String::as_str), Some("none"));
        assert_eq!(ordinary.get(LABEL_EGRESS), None);
        assert_eq!(selecting(&policies, &ordinary), [USER_NETWORK_POLICY]);
        assert_eq!(selecting(&policies, &offline), [OFFLINE_NETWORK_POLICY]);
        // Whatever value the label had, the pod would still be offline:
        // no kernel pod is left selected by neither policy.
        let mut odd = ordinary.clone();
        odd.insert(LABEL_EGRESS.into(), "dns".into());
        assert_eq!(selecting(&policies, &odd), [OFFLINE_NETWORK_POLICY]);
        // Neither selects the gateway.
        assert!(selecting(&policies, &gateway_labels()).is_empty());

        let [kernels, offline] = policies.map(|p| p.spec.unwrap());
        assert_eq!(kernels.egress.as_ref().unwrap().len(), 2);
        assert_eq!(offline.egress, Some(vec![]), "no egress rule at all");
        assert_eq!(
            offline.policy_types,
            Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            "without Egress in policyTypes an empty egress list restricts nothing"
        );
        assert_eq!(offline.ingress, kernels.ingress);
    }

    #[test]
    fn label_selectors_match_as_the_api_server_does() {
        let labels = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        let req = |key: &str, operator: &str, values: Option<Vec<&str>>| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: values.map(|v| v.into_iter().map(str::to_owned).collect()),
            }]),
        };
        assert!(selects(&LabelSelector::default(), &labels));
        assert!(selects(&req("a", "In", Some(vec!["1", "2"])), &labels));
        assert!(!selects(&req("a", "In", Some(vec!["2"])), &labels));
        assert!(!selects(&req("a", "NotIn", Some(vec!["1"])), &labels));
        assert!(selects(&req("b", "NotIn", Some(vec!["1"])), &labels));
        assert!(selects(&req("a", "Exists", None), &labels));
        assert!(!selects(&req("b", "Exists", None), &labels));
        assert!(selects(&req("b", "DoesNotExist", None), &labels));
        assert!(!selects(&req("a", "DoesNotExist", None), &labels));
        assert!(!selects(&req("a", "Gt", Some(vec!["0"])), &labels));
        let pairs = LabelSelector {
            match_labels: Some(BTreeMap::from([("a".to_owned(), "2".to_owned())])),
            ..Default::default()
        };
        assert!(!selects(&pairs, &labels));
    }
}
