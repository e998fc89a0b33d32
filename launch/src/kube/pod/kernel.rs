//! A kernel's Pod and the Secret with its connection file: pure functions
//! from a launch to the objects the API server receives, and the API
//! server's own checks on extended resources, so a pod it would reject
//! fails before it is sent.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext,
    TCPSocketAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::*;
use crate::kube::config::KubeConfig;
use scheduler::inventory::is_mig_profile;

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
    /// No network (a grading kernel): the pod is labelled
    /// [`LABEL_EGRESS`]`=`[`EGRESS_NONE`], so only the offline
    /// NetworkPolicy selects it, which allows no egress, not even DNS.
    pub offline: bool,
    /// The user's folder on `shared_data`'s claim (its subPath), where the
    /// pod works; its own volume (`notebooks_pvc` or an emptyDir) if `None`.
    pub work: Option<String>,
    /// Where in the work folder it starts (a notebook's folder), when on
    /// the shared claim; the work folder itself if `None`.
    pub start_in: Option<String>,
    /// Folders on `shared_data`'s claim the pod reads and never writes: a
    /// subPath each, and where it shows under the work folder.
    pub read_only: Vec<SharedFolder>,
    /// `activeDeadlineSeconds`: the cluster ends the pod after that long.
    pub deadline_s: Option<i64>,
}

/// A read-only folder from the shared data claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFolder {
    /// Its path on the claim (relative, plain names only).
    pub sub_path: String,
    /// Where it shows, relative to the work folder (plain names only).
    pub at: String,
}

/// The volume of the shared claim's read-only folders.
const SHARED_READ_ONLY: &str = "shared-read-only";

/// Variables that choose GPU devices, for the container runtime's hook
/// (`NVIDIA_VISIBLE_DEVICES`, `NVIDIA_MIG_CONFIG_DEVICES`, ...) or CUDA.
fn is_device_env(key: &str) -> bool {
    key.starts_with("NVIDIA_") || key == "CUDA_VISIBLE_DEVICES"
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
    if k.offline {
        l.insert(LABEL_EGRESS.to_owned(), EGRESS_NONE.to_owned());
    }
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
    let shared = |read_only: Option<bool>, name: &str| {
        config.shared_data.as_ref().map(|d| Volume {
            name: name.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: d.claim.clone(),
                read_only,
            }),
            ..Default::default()
        })
    };
    let work_volume = k.work.as_ref().and_then(|_| shared(None, "work"));
    let shared_read_only = (!k.read_only.is_empty())
        .then(|| shared(Some(true), SHARED_READ_ONLY))
        .flatten();
    volumes.extend(shared_read_only);
    volumes.push(match (work_volume, notebooks_pvc_name(config, &k.user)) {
        (Some(volume), _) => volume,
        (None, Some(claim_name)) => Volume {
            name: "work".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Default::default()
        },
        (None, None) => Volume {
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
        working_dir: Some(match &k.start_in {
            Some(folder) if k.work.is_some() => format!("{WORK_DIR}/{folder}"),
            _ => WORK_DIR.into(),
        }),
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
        volume_mounts: Some(
            vec![
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
                    sub_path: k.work.clone(),
                    ..Default::default()
                },
            ]
            .into_iter()
            // After the work folder: they show inside it.
            .chain(k.read_only.iter().map(|f| VolumeMount {
                name: SHARED_READ_ONLY.into(),
                mount_path: format!("{WORK_DIR}/{}", f.at),
                sub_path: Some(f.sub_path.clone()),
                read_only: Some(true),
                ..Default::default()
            }))
            .collect(),
        ),
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
            active_deadline_seconds: k.deadline_s,
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
