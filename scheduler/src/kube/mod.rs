//! The Kubernetes backend: one pod per kernel on the academy's GPU cluster.
//!
//! Admission stays with the gateway (who may have which GPU); Kubernetes
//! only places the pod. A launch creates the pod, then the Secret holding
//! its connection file (owned by the pod, so it goes when the pod goes),
//! then waits until the pod is Ready and connects to its IP. Every state on
//! the way is reported as progress, and every failure as a reason a user
//! can act on ([`state`]).
//!
//! One watcher per backend (not per kernel) mirrors every kernel pod this
//! gateway owns into a cache: launches wait on it, and the gateway's
//! liveness checks read it without calling the API server. The watcher
//! relists by itself when the server says its resourceVersion is gone (410).

pub mod kueue;
pub mod pod;
pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use jupyter_protocol::{ConnectionInfo, Transport};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use serde::Deserialize;

use crate::launcher::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher};
use pod::{KERNEL_PORTS, KernelPod, OWNED_SELECTOR};
use state::PodState;

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
    /// A per-user PVC for notebooks, e.g. `notebooks-{user}`.
    pub notebooks_pvc: Option<String>,
    /// How long a pod may take to become ready (`5m`).
    pub launch_timeout: Timeout,
    /// Label pods with the user's group as their Kueue LocalQueue.
    pub kueue: bool,
    /// How long a start may take before the gateway answers 202 `starting`
    /// (the pod keeps starting; its progress is on the kernel model), well
    /// within a client's launch timeout (jupyter_server's is 40 s).
    pub answer_after: Timeout,
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
            launch_timeout: Timeout(Duration::from_secs(300)),
            kueue: false,
            answer_after: Timeout(Duration::from_secs(20)),
        }
    }
}

/// A duration written `90s`, `5m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected 90s, 5m or 1h, got {s:?}")))?;
        let secs = match unit {
            "" | "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown unit in {s:?} (s, m, h)"
                )));
            }
        };
        Ok(Timeout(Duration::from_secs(secs)))
    }
}

/// Why a kernel pod could not be started, as the user is told.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KubeFailure {
    #[error("no node can run the kernel (Unschedulable): {message}")]
    Unschedulable { message: String },
    #[error("cannot pull the kernel image {image} ({reason}): {message}")]
    ImagePull {
        image: String,
        reason: String,
        message: String,
    },
    #[error("the namespace's ResourceQuota is used up: {0}")]
    QuotaExceeded(String),
    #[error("the API server forbids it: {0}")]
    Forbidden(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("the API server rejected the pod as invalid: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the kernel's pod was not ready after {}s; it was {doing}", waited.as_secs())]
    Timeout { waited: Duration, doing: String },
    #[error("the kernel's pod stopped: {0}")]
    Exited(String),
    #[error("the Kubernetes API failed: {0}")]
    Api(String),
}

impl KubeFailure {
    /// The user-facing reason for an API error.
    pub fn from_api(err: kube::Error) -> KubeFailure {
        match err {
            kube::Error::Api(s) => {
                let message = if s.message.is_empty() {
                    s.reason.clone()
                } else {
                    s.message.clone()
                };
                match s.code {
                    403 if message.contains("exceeded quota") => {
                        KubeFailure::QuotaExceeded(message)
                    }
                    403 => KubeFailure::Forbidden(message),
                    409 => KubeFailure::AlreadyExists(message),
                    422 => {
                        let causes: Vec<String> = s
                            .details
                            .iter()
                            .flat_map(|d| d.causes.iter())
                            .map(|c| format!("{}: {}", c.field, c.message))
                            .collect();
                        if causes.is_empty() {
                            KubeFailure::Invalid(message)
                        } else {
                            KubeFailure::Invalid(causes.join("; "))
                        }
                    }
                    404 => KubeFailure::NotFound(message),
                    code => KubeFailure::Api(format!("{code} {}: {message}", s.reason)),
                }
            }
            other => KubeFailure::Api(other.to_string()),
        }
    }
}

/// The pods we own, mirrored by the watcher.
#[derive(Default)]
struct PodCache {
    pods: Mutex<HashMap<(String, String), Pod>>,
    /// Bumped on every change; `None` until the first full list.
    generation: tokio::sync::watch::Sender<Option<u64>>,
}

impl PodCache {
    fn get(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn bump(&self) {
        self.generation
            .send_modify(|g| *g = Some(g.map_or(0, |n| n.wrapping_add(1))));
    }

    fn is_synced(&self) -> bool {
        self.generation.borrow().is_some()
    }
}

fn key_of(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

pub struct KubeLauncher {
    client: kube::Client,
    config: KubeConfig,
    cache: Arc<PodCache>,
    watcher: tokio::task::AbortHandle,
}

impl Drop for KubeLauncher {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl KubeLauncher {
    /// Starts the watcher at once; call it inside a tokio runtime.
    pub fn new(client: kube::Client, config: KubeConfig) -> KubeLauncher {
        let cache = Arc::new(PodCache::default());
        let api: Api<Pod> = if config.namespace_per_user.is_some() {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), &config.namespace)
        };
        let task = tokio::spawn(mirror(api, cache.clone()));
        KubeLauncher {
            client,
            config,
            cache,
            watcher: task.abort_handle(),
        }
    }

    /// A client from the environment: the pod's service account in the
    /// cluster, else `KUBECONFIG` or `~/.kube/config`.
    pub async fn from_env(config: KubeConfig) -> Result<KubeLauncher, LaunchError> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| LaunchError::Kube(KubeFailure::Api(format!("no cluster: {e}"))))?;
        Ok(KubeLauncher::new(client, config))
    }

    pub fn config(&self) -> &KubeConfig {
        &self.config
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Waits until the watcher has listed the pods once.
    async fn synced(&self, within: Duration) -> bool {
        let mut rx = self.cache.generation.subscribe();
        tokio::time::timeout(within, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), KubeFailure> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.pods(namespace).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(KubeFailure::from_api(e)),
        }
    }

    /// Waits for the pod in the cache until it is ready or failed.
    async fn wait_ready(
        &self,
        namespace: &str,
        name: &str,
        progress: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<String, KubeFailure> {
        let timeout = self.config.launch_timeout.0;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.cache.generation.subscribe();
        let mut doing = "waiting for the API server's watch".to_owned();
        loop {
            if let Some(pod) = self.cache.get(namespace, name) {
                match state::interpret(&pod) {
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
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(KubeFailure::Timeout {
                        waited: timeout,
                        doing,
                    });
                }
            }
        }
    }
}

/// Mirrors the owned pods into `cache`, for as long as the backend lives.
async fn mirror(api: Api<Pod>, cache: Arc<PodCache>) {
    let config = watcher::Config::default().labels(OWNED_SELECTOR);
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut fresh: HashMap<(String, String), Pod> = HashMap::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => fresh.clear(),
            Ok(watcher::Event::InitApply(p)) => {
                fresh.insert(key_of(&p), p);
            }
            Ok(watcher::Event::InitDone) => {
                *cache.pods.lock().unwrap_or_else(|e| e.into_inner()) = std::mem::take(&mut fresh);
                cache.bump();
            }
            Ok(watcher::Event::Apply(p)) => {
                cache
                    .pods
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key_of(&p), p);
                cache.bump();
            }
            Ok(watcher::Event::Delete(p)) => {
                cache
                    .pods
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key_of(&p));
                cache.bump();
            }
            Err(e) => tracing::warn!(error = %e, "kernel pod watch: will retry"),
        }
    }
}

/// The kernel's command: the kernelspec's argv, reading the mounted
/// connection file.
fn pod_argv(argv: &[String]) -> Vec<String> {
    argv.iter()
        .map(|a| a.replace("{connection_file}", pod::CONNECTION_FILE))
        .collect()
}

#[async_trait::async_trait]
impl Launcher for KubeLauncher {
    async fn launch(&self, spec: LaunchSpec) -> Result<Launched, LaunchError> {
        if spec.argv.is_empty() {
            return Err(LaunchError::EmptyArgv);
        }
        let mut env = spec.env.clone();
        // Modelled GPUs are the real thing in a pod.
        env.remove("ACADEMY_VIRTUAL_GPU");
        let kernel = KernelPod {
            kernel_id: spec.kernel_id,
            user: spec.user.clone(),
            group: spec.group.clone(),
            argv: pod_argv(&spec.argv),
            env,
            gpus: spec.gpus.len() as u32,
            gpu_model: spec.gpu_model.clone(),
            cpu: spec.cpu.clone(),
            memory: spec.memory.clone(),
        };
        let pod = pod::build_pod(&self.config, &kernel);
        pod::check_extended_resources(&pod)
            .map_err(|e| LaunchError::Kube(KubeFailure::Invalid(e)))?;
        let namespace = pod::namespace_for(&self.config, &spec.user);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let say = |m: String| {
            if let Some(p) = &spec.progress {
                let _ = p.send(m);
            }
        };
        if self.config.namespace_per_user.is_some() {
            let ns = pod::build_namespace(&namespace, &spec.user);
            match Api::<Namespace>::all(self.client.clone())
                .create(&PostParams::default(), &ns)
                .await
            {
                Ok(_) => say(format!("created namespace {namespace}")),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(LaunchError::Kube(KubeFailure::from_api(e))),
            }
        }
        let created = self
            .pods(&namespace)
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| LaunchError::Kube(KubeFailure::from_api(e)))?;
        say(format!("created pod {namespace}/{name}"));

        let key =
            uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string();
        let connection = |ip: &str| ConnectionInfo {
            ip: ip.to_owned(),
            transport: Transport::TCP,
            shell_port: KERNEL_PORTS[0],
            iopub_port: KERNEL_PORTS[1],
            stdin_port: KERNEL_PORTS[2],
            control_port: KERNEL_PORTS[3],
            hb_port: KERNEL_PORTS[4],
            key: key.clone(),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: None,
        };
        let file = serde_json::to_string(&connection("0.0.0.0"))
            .map_err(|e| LaunchError::Kube(KubeFailure::Api(e.to_string())))?;
        let secret = pod::build_secret(&created, file);
        let outcome = match Api::<Secret>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &secret)
            .await
        {
            Ok(_) => {
                self.wait_ready(&namespace, &name, spec.progress.as_ref())
                    .await
            }
            Err(e) => Err(KubeFailure::from_api(e)),
        };
        match outcome {
            Ok(ip) => {
                tracing::info!(kernel_id = %spec.kernel_id, pod = %name, %ip, "kernel pod ready");
                Ok(Launched {
                    connection: connection(&ip),
                    locator: KernelLocator::Pod { namespace, name },
                })
            }
            Err(failure) => {
                tracing::warn!(kernel_id = %spec.kernel_id, pod = %name, %failure, "kernel pod failed");
                if let Err(e) = self.delete_pod(&namespace, &name).await {
                    tracing::warn!(pod = %name, error = %e, "cannot delete the failed pod");
                }
                Err(LaunchError::Kube(failure))
            }
        }
    }

    async fn signal(
        &self,
        locator: &KernelLocator,
        signal: KernelSignal,
    ) -> Result<(), LaunchError> {
        let KernelLocator::Pod { namespace, name } = locator else {
            return Err(LaunchError::Foreign(locator.clone()));
        };
        match signal {
            KernelSignal::Kill => self
                .delete_pod(namespace, name)
                .await
                .map_err(LaunchError::Kube),
            KernelSignal::Interrupt => Err(LaunchError::NoSignals(
                "a kernel pod is interrupted by message (interrupt_mode \"message\")".into(),
            )),
        }
    }

    async fn is_alive(&self, locator: &KernelLocator) -> bool {
        let KernelLocator::Pod { namespace, name } = locator else {
            return false;
        };
        let pod = if self.cache.is_synced() {
            self.cache.get(namespace, name)
        } else {
            self.pods(namespace).get_opt(name).await.ok().flatten()
        };
        pod.is_some_and(|p| !matches!(state::interpret(&p), PodState::Failed(_)))
    }

    async fn cleanup(&self, kernel_id: uuid::Uuid, locator: &KernelLocator) {
        let KernelLocator::Pod { namespace, name } = locator else {
            return;
        };
        if let Err(e) = self.delete_pod(namespace, name).await {
            tracing::warn!(%kernel_id, pod = %name, error = %e, "cannot delete the kernel's pod");
        }
    }

    async fn log_tail(&self, kernel_id: uuid::Uuid, max_bytes: usize) -> String {
        let id = kernel_id.to_string();
        let found = self
            .cache
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, p)| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(pod::LABEL_KERNEL_ID))
                    == Some(&id)
            })
            .map(|(k, _)| k.clone());
        let Some((namespace, name)) = found else {
            return String::new();
        };
        let params = LogParams {
            tail_lines: Some(50),
            limit_bytes: Some(max_bytes as i64),
            ..Default::default()
        };
        self.pods(&namespace)
            .logs(&name, &params)
            .await
            .unwrap_or_default()
    }

    fn slow_starts(&self) -> bool {
        true
    }

    async fn adopt(&self, known: &HashSet<uuid::Uuid>) -> Result<Vec<uuid::Uuid>, LaunchError> {
        if !self.synced(self.config.launch_timeout.0).await {
            return Err(LaunchError::Kube(KubeFailure::Api(
                "the kernel pod watch did not list the pods".into(),
            )));
        }
        let owned: Vec<(String, String, Option<uuid::Uuid>)> = self
            .cache
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((ns, name), p)| {
                let id = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(pod::LABEL_KERNEL_ID))
                    .and_then(|v| v.parse().ok());
                (ns.clone(), name.clone(), id)
            })
            .collect();
        let mut orphans = Vec::new();
        for (ns, name, id) in owned {
            if id.is_some_and(|id| known.contains(&id)) {
                continue;
            }
            tracing::info!(pod = %name, namespace = %ns, "deleting an orphaned kernel pod");
            self.delete_pod(&ns, &name)
                .await
                .map_err(LaunchError::Kube)?;
            orphans.extend(id);
        }
        Ok(orphans)
    }
}
