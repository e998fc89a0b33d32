//! What a kernel pod looks like: pure functions from a launch to the objects
//! the API server receives, so every field can be tested without a cluster.
//!
//! The pod meets the restricted Pod Security Standard, gets no service
//! account token, holds its GPUs as limits only, and reads its connection
//! file (with the HMAC key) from a Secret the pod owns, never from its spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, TCPSocketAction, Toleration, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{KubeConfig, egress};
use crate::inventory::is_mig_profile;

/// The ports a kernel listens on inside its pod: shell, iopub, stdin,
/// control, heartbeat. Fixed, because the pod has its own network.
pub const KERNEL_PORTS: [u16; 5] = [9000, 9001, 9002, 9003, 9004];
/// Where the kernel image has academy-kernel (gpu-images/kernel.Dockerfile).
pub const KERNEL_BINARY: &str = "/usr/local/bin/academy-kernel";
/// Where the connection file is mounted.
pub const CONNECTION_DIR: &str = "/var/run/academy-lab";
pub const CONNECTION_FILE: &str = "/var/run/academy-lab/connection.json";
/// The kernel's working directory (its notebooks, when a PVC is mounted).
pub const WORK_DIR: &str = "/home/academy/work";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_KERNEL_ID: &str = "academy-lab.io/kernel-id";
pub const LABEL_USER: &str = "academy-lab.io/user";
pub const LABEL_GROUP: &str = "academy-lab.io/group";
pub const LABEL_KUEUE_QUEUE: &str = "kueue.x-k8s.io/queue-name";
/// The value of `app.kubernetes.io/managed-by` on everything we create.
pub const MANAGER: &str = "academy-lab-gateway";
/// The label selector of every kernel pod this gateway owns.
pub const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=academy-lab-gateway";

/// One kernel to place, as the backend sees it.
#[derive(Debug, Clone)]
pub struct KernelPod {
    pub kernel_id: uuid::Uuid,
    pub user: String,
    pub group: Option<String>,
    /// The command, with `{connection_file}` already replaced.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub gpus: u32,
    /// The admitted GPU model, or a MIG profile such as `1g.10gb`.
    pub gpu_model: Option<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

/// A DNS-1123 label (at most 63 characters of `[a-z0-9-]`, starting and
/// ending alphanumeric) made from `s`; never empty.
pub fn dns_label(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(max).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "x".into() } else { out }
}

/// Whether `s` is a DNS-1123 label of at most `max` characters.
fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Hex digits of the hash that tells apart users whose names sanitise alike.
const USER_HASH_LEN: usize = 10;

/// FNV-1a, 64 bits: stable across versions and platforms (the names it
/// makes are kept in the cluster), unlike std's hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `s` ends as [`user_label`]'s hashed names do: `-` and
/// [`USER_HASH_LEN`] lower-case hex digits.
fn looks_hashed(s: &str) -> bool {
    let Some(split) = s.len().checked_sub(USER_HASH_LEN + 1) else {
        return false;
    };
    let (_, tail) = s.split_at(split);
    tail.starts_with('-')
        && tail[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A user's part of a namespace or volume name: a DNS-1123 label of at most
/// `max` characters (at least `USER_HASH_LEN + 2`), different for different
/// users (issue 13, item 9: `ana.lee`, `ana_lee` and `Ana-Lee` must not
/// share notebooks).
///
/// A name that already is such a label is kept as it is (so the volumes of
/// `alice` or `bob-smith` keep their names), unless it ends like a hashed
/// name does. Any other name becomes its sanitised form, cut to fit, then
/// `-` and a hash of the whole name. Kept names never end like hashed ones,
/// so the two kinds never meet; two hashed names meet only if their
/// sanitised forms and 40-bit hashes both coincide.
pub fn user_label(user: &str, max: usize) -> String {
    let max = max.clamp(USER_HASH_LEN + 2, 63);
    if is_dns_label(user, max) && !looks_hashed(user) {
        return user.to_owned();
    }
    let hash = format!("{:016x}", fnv1a(user));
    let stem = dns_label(user, max - USER_HASH_LEN - 1);
    format!("{stem}-{}", &hash[..USER_HASH_LEN])
}

/// `template` with `{user}` replaced by the user's label, the label cut so
/// that the whole stays a DNS-1123 label (63 characters).
fn user_name_from(template: &str, user: &str) -> String {
    let fixed = template.replace("{user}", "").len();
    template.replace("{user}", &user_label(user, 63usize.saturating_sub(fixed)))
}

/// `<user>-<kernel-id>`: unique by the id, readable by the user.
pub fn pod_name(user: &str, kernel_id: uuid::Uuid) -> String {
    // 36 for the id and one dash leave 26 for the user.
    format!("{}-{kernel_id}", dns_label(user, 26))
}

/// Variables that choose GPU devices, for the container runtime's hook
/// (`NVIDIA_VISIBLE_DEVICES`, `NVIDIA_MIG_CONFIG_DEVICES`, ...) or CUDA.
fn is_device_env(key: &str) -> bool {
    key.starts_with("NVIDIA_") || key == "CUDA_VISIBLE_DEVICES"
}

/// The connection Secret's name.
pub fn secret_name(pod: &str) -> String {
    format!("{pod}-connection")
}

/// The namespace a user's kernels run in.
pub fn namespace_for(config: &KubeConfig, user: &str) -> String {
    match &config.namespace_per_user {
        Some(template) => user_name_from(template, user),
        None => config.namespace.clone(),
    }
}

/// A label value (at most 63 characters of `[A-Za-z0-9-_.]`, alphanumeric at
/// both ends).
fn label_value(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The extended resource that holds `model` GPUs: `nvidia.com/gpu`, or a MIG
/// device such as `nvidia.com/mig-1g.10gb`.
pub fn gpu_resource(config: &KubeConfig, model: Option<&str>) -> String {
    match model {
        Some(m) if is_mig_profile(m) => format!("nvidia.com/mig-{m}"),
        _ => config.gpu_resource.clone(),
    }
}

fn labels(config: &KubeConfig, k: &KernelPod) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_NAME.to_owned(), "academy-lab".to_owned()),
        (LABEL_COMPONENT.to_owned(), "kernel".to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (LABEL_PART_OF.to_owned(), "academy-lab".to_owned()),
        (LABEL_KERNEL_ID.to_owned(), k.kernel_id.to_string()),
        (LABEL_USER.to_owned(), label_value(&k.user)),
    ]);
    if let Some(g) = &k.group {
        l.insert(LABEL_GROUP.to_owned(), label_value(g));
        if config.kueue {
            l.insert(LABEL_KUEUE_QUEUE.to_owned(), dns_label(g, 63));
        }
    }
    l
}

/// The kernel's pod. It waits in ContainerCreating until its Secret exists.
pub fn build_pod(config: &KubeConfig, k: &KernelPod) -> Pod {
    let name = pod_name(&k.user, k.kernel_id);
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    let cpu = k.cpu.clone().unwrap_or_else(|| config.cpu.clone());
    let memory = k.memory.clone().unwrap_or_else(|| config.memory.clone());
    requests.insert("cpu".to_owned(), Quantity(cpu.clone()));
    limits.insert("cpu".to_owned(), Quantity(cpu));
    requests.insert("memory".to_owned(), Quantity(memory.clone()));
    limits.insert("memory".to_owned(), Quantity(memory));
    let mut tolerations = None;
    let mut node_selector = None;
    if k.gpus > 0 {
        // Extended resources go in limits only: Kubernetes copies them to
        // requests, which must then be equal.
        limits.insert(
            gpu_resource(config, k.gpu_model.as_deref()),
            Quantity(k.gpus.to_string()),
        );
        tolerations = Some(vec![Toleration {
            key: Some(config.gpu_resource.clone()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }]);
        if let Some(model) = k.gpu_model.as_deref().filter(|m| !is_mig_profile(m)) {
            let product = config
                .gpu_products
                .get(model)
                .cloned()
                .unwrap_or_else(|| model.to_owned());
            node_selector = Some(BTreeMap::from([(
                config.gpu_product_label.clone(),
                product,
            )]));
        }
    }
    let mut env: Vec<EnvVar> = k
        .env
        .iter()
        // The device plugin decides which devices the container sees: no
        // variable of the launch may widen or move its allocation.
        .filter(|(key, _)| !is_device_env(key))
        .map(|(key, value)| EnvVar {
            name: key.clone(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect();
    if k.gpus == 0 {
        // The CUDA base image says `all`; wherever the nvidia runtime runs
        // this container (a node's default runtime), that would expose
        // every GPU of the node to a kernel admitted for none.
        env.push(EnvVar {
            name: "NVIDIA_VISIBLE_DEVICES".into(),
            value: Some("void".into()),
            ..Default::default()
        });
    }
    env.push(EnvVar {
        name: "HOME".into(),
        value: Some(WORK_DIR.into()),
        ..Default::default()
    });
    let mut volumes = vec![
        Volume {
            name: "connection".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name(&name)),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "dshm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: config.shm.clone().map(Quantity),
            }),
            ..Default::default()
        },
    ];
    volumes.push(match notebooks_pvc_name(config, &k.user) {
        Some(claim_name) => Volume {
            name: "work".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Default::default()
        },
        None => Volume {
            name: "work".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    });
    let container = Container {
        name: "kernel".into(),
        image: Some(config.kernel_image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        command: Some(k.argv.clone()),
        working_dir: Some(WORK_DIR.into()),
        env: Some(env),
        ports: Some(
            ["shell", "iopub", "stdin", "control", "hb"]
                .iter()
                .zip(KERNEL_PORTS)
                .map(|(n, p)| ContainerPort {
                    name: Some((*n).into()),
                    container_port: i32::from(p),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        // Ready once the shell socket is bound: the gateway can connect.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(KERNEL_PORTS[0])),
                host: None,
            }),
            period_seconds: Some(1),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            limits: Some(limits),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "connection".into(),
                mount_path: CONNECTION_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "dshm".into(),
                mount_path: "/dev/shm".into(),
                ..Default::default()
            },
            VolumeMount {
                name: "work".into(),
                mount_path: WORK_DIR.into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace_for(config, &k.user)),
            labels: Some(labels(config, k)),
            annotations: Some(BTreeMap::from([(
                "cluster-autoscaler.kubernetes.io/safe-to-evict".to_owned(),
                "false".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            // Only a pod holding GPUs runs under the GPU runtime.
            runtime_class_name: config.runtime_class.clone().filter(|_| k.gpus > 0),
            node_selector,
            tolerations,
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(10001),
                run_as_group: Some(10001),
                fs_group: Some(10001),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            containers: vec![container],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

/// The Secret with the connection file, owned by the pod so that deleting
/// the pod deletes it.
pub fn build_secret(pod: &Pod, connection_json: String) -> Secret {
    let name = pod.metadata.name.clone().unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&name)),
            namespace: pod.metadata.namespace.clone(),
            labels: pod.metadata.labels.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name,
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                // Blocking the owner's deletion needs `update` on
                // pods/finalizers where OwnerReferencesPermissionEnforcement
                // is on (OpenShift); garbage collection needs no block.
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "connection.json".to_owned(),
            connection_json,
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

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

/// The name of a user's notebooks PVC, if the config asks for one.
pub fn notebooks_pvc_name(config: &KubeConfig, user: &str) -> Option<String> {
    config
        .notebooks_pvc
        .as_ref()
        .map(|t| user_name_from(t, user))
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

/// The API server's rules for extended resources (such as GPUs), as it
/// applies them at pod creation: a limit is required, the quantity is a
/// whole number, and a request, if present, equals the limit.
pub fn check_extended_resources(pod: &Pod) -> Result<(), String> {
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    for c in containers {
        let res = c.resources.clone().unwrap_or_default();
        let limits = res.limits.unwrap_or_default();
        let requests = res.requests.unwrap_or_default();
        let extended = |name: &str| name.contains('/') && !name.starts_with("kubernetes.io/");
        for (name, q) in requests.iter().filter(|(n, _)| extended(n)) {
            match limits.get(name) {
                None => {
                    return Err(format!(
                        "container {}: {name} is requested but has no limit",
                        c.name
                    ));
                }
                Some(l) if l != q => {
                    return Err(format!(
                        "container {}: {name} request {} must equal its limit {}",
                        c.name, q.0, l.0
                    ));
                }
                _ => {}
            }
        }
        for (name, q) in limits.iter().filter(|(n, _)| extended(n)) {
            if q.0.parse::<u64>().is_err() {
                return Err(format!(
                    "container {}: {name} must be a whole number, not {}",
                    c.name, q.0
                ));
            }
        }
    }
    Ok(())
}
