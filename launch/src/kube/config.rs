//! `[kubernetes]` in lab.toml: what the backend is told, with its defaults.
//! Only the configuration; nothing here talks to a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::egress;

/// `[kubernetes]` in lab.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeConfig {
    /// The namespace of kernel pods (shared by all users).
    pub namespace: String,
    /// A namespace per user instead, from a template such as `lab-{user}`,
    /// created on demand.
    pub namespace_per_user: Option<String>,
    pub kernel_image: String,
    pub image_pull_policy: Option<String>,
    /// e.g. `nvidia`, where the GPU operator installs a runtime class.
    pub runtime_class: Option<String>,
    /// The extended resource of a whole GPU.
    pub gpu_resource: String,
    /// The node label that names a node's GPU model (GPU feature discovery).
    pub gpu_product_label: String,
    /// GPU model (as in `gpus`) → that label's value, where they differ.
    pub gpu_products: BTreeMap<String, String>,
    /// Default CPU and memory of a kernel (request = limit).
    pub cpu: String,
    pub memory: String,
    /// Size of the in-memory `/dev/shm`.
    pub shm: Option<String>,
    /// A per-user PVC for notebooks, e.g. `notebooks-{user}`, created on
    /// demand (and kept when the user's kernels go).
    pub notebooks_pvc: Option<String>,
    /// The volume the gateway keeps its data dir on, when kernel pods share
    /// it (a ReadWriteMany claim): each pod then works in its user's folder
    /// on it (`users/USER`, the folder the contents API serves; instead of
    /// `notebooks_pvc`), and gets each read-only folder of its launch (a
    /// competition's participant files) from it, read-only, by subPath.
    /// Without it pods work on their own volume and get no such folders.
    pub shared_data: Option<SharedData>,
    /// The size of a notebooks PVC it creates.
    pub notebooks_pvc_size: String,
    /// Its storage class; the cluster's default without one.
    pub notebooks_storage_class: Option<String>,
    /// How long a pod may take to become ready (`5m`).
    pub launch_timeout: Timeout,
    /// How long a pod may stay Unschedulable before the start fails with
    /// the scheduler's words: long enough for a pod being deleted to free
    /// its GPU, or for a cluster autoscaler to add a node.
    pub unschedulable_timeout: Timeout,
    /// The grace period a kernel pod gets when it is deleted. The delete
    /// waits (up to this, and a little more) for the pod to be gone, so its
    /// GPU is free before admission hands it to someone else.
    pub delete_grace: Timeout,
    /// Label pods with the user's group as their Kueue LocalQueue.
    pub kueue: bool,
    /// How long a start may take before the gateway answers 202 `starting`
    /// (the pod keeps starting; its progress is on the kernel model), well
    /// within a client's launch timeout (jupyter_server's is 40 s).
    pub answer_after: Timeout,
    /// Where kernel pods may connect beside DNS: the academy's package
    /// mirrors, as `[[kubernetes.egress]]` tables of `cidr` and `ports`.
    /// None by default; the cloud metadata endpoint is never allowed.
    pub egress: Vec<egress::EgressRule>,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            namespace: "academy-lab".into(),
            namespace_per_user: None,
            kernel_image: "academy-lab/kernel:latest".into(),
            image_pull_policy: None,
            runtime_class: None,
            gpu_resource: "nvidia.com/gpu".into(),
            gpu_product_label: "nvidia.com/gpu.product".into(),
            gpu_products: BTreeMap::new(),
            cpu: "1".into(),
            memory: "4Gi".into(),
            shm: Some("1Gi".into()),
            notebooks_pvc: None,
            shared_data: None,
            notebooks_pvc_size: "10Gi".into(),
            notebooks_storage_class: None,
            launch_timeout: Timeout(Duration::from_secs(300)),
            unschedulable_timeout: Timeout(Duration::from_secs(60)),
            delete_grace: Timeout(Duration::from_secs(10)),
            kueue: false,
            answer_after: Timeout(Duration::from_secs(20)),
            egress: Vec::new(),
        }
    }
}

/// `[kubernetes.shared_data]`: a claim and where the gateway mounts it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SharedData {
    /// The PersistentVolumeClaim (ReadWriteMany), in the kernels' namespace.
    pub claim: String,
    /// Where the gateway has it mounted: its `--data-dir` (`/data`).
    pub mount: std::path::PathBuf,
}

/// A duration written `90s`, `5m`, `1h` or `1m 30s` (humantime's grammar,
/// as the gateway's lab.toml), or a bare number of seconds (`90`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        let parsed = match t.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => humantime::parse_duration(t),
        };
        parsed.map(Timeout).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration such as 90s, 5m or 1h, got {s:?}: {e}"
            ))
        })
    }
}
