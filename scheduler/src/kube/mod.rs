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

pub mod egress;
pub mod kueue;
pub mod pod;
pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use jupyter_protocol::{ConnectionInfo, Transport};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use serde::Deserialize;

use crate::launcher::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher};
use pod::{KERNEL_PORTS, KernelPod, OWNED_SELECTOR};
use state::PodState;

/// How long the gateway's start waits for the pod watch before adopting.
const ADOPT_WAIT: Duration = Duration::from_secs(30);

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
    /// What `prepare` already made (namespaces, policies, queues, PVCs).
    prepared: Mutex<HashSet<String>>,
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
            prepared: Mutex::default(),
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

    /// Deletes a pod with its grace period and waits until the watch sees
    /// it gone: a force delete (grace 0) would remove the object while its
    /// container may still hold the GPU, and Kubernetes could place the
    /// next kernel on that GPU.
    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), KubeFailure> {
        let grace = self.config.delete_grace.0;
        let params = DeleteParams {
            grace_period_seconds: Some(grace.as_secs() as u32),
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.pods(namespace).delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(KubeFailure::from_api(e)),
        }
        let mut rx = self.cache.generation.subscribe();
        let gone = async {
            while self.cache.get(namespace, name).is_some() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(grace + Duration::from_secs(15), gone)
            .await
            .is_err()
        {
            tracing::warn!(pod = name, "the deleted kernel pod is still terminating");
        }
        Ok(())
    }

    /// What a user's kernels need beside the pod, created once per gateway
    /// process (409 AlreadyExists is fine): in per-user mode the namespace,
    /// its NetworkPolicy and (with Kueue) the group's LocalQueue; the
    /// notebooks PVC where one is configured.
    async fn prepare(
        &self,
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
        let per_user = self.config.namespace_per_user.is_some();
        if per_user && self.first_time(format!("namespace {namespace}")) {
            let ns = pod::build_namespace(namespace, user);
            let r = Api::<Namespace>::all(self.client.clone())
                .create(&post, &ns)
                .await
                .map(drop);
            if created(r)? {
                say(format!("created namespace {namespace}"));
            }
            let policy = pod::build_network_policy(namespace, &self.config.namespace, &self.config);
            let policies = Api::<NetworkPolicy>::namespaced(self.client.clone(), namespace);
            let r = policies.create(&post, &policy).await.map(drop);
            if !created(r)? {
                // A namespace made by an older gateway, or with other
                // mirrors: its policy becomes this one (a merge patch
                // replaces the lists whole).
                policies
                    .patch(
                        pod::USER_NETWORK_POLICY,
                        &PatchParams::default(),
                        &Patch::Merge(&policy),
                    )
                    .await
                    .map_err(KubeFailure::from_api)?;
            }
        }
        if per_user
            && self.config.kueue
            && let Some(group) = group
            && self.first_time(format!("localqueue {namespace}/{group}"))
        {
            let gvk = kube::api::GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta1", "LocalQueue");
            let resource = kube::api::ApiResource::from_gvk(&gvk);
            let queue: kube::api::DynamicObject =
                serde_json::from_value(pod::build_local_queue(namespace, group))
                    .map_err(|e| KubeFailure::Api(e.to_string()))?;
            let r = Api::<kube::api::DynamicObject>::namespaced_with(
                self.client.clone(),
                namespace,
                &resource,
            )
            .create(&post, &queue)
            .await
            .map(drop);
            created(r)?;
        }
        if let Some(pvc) = pod::build_notebooks_pvc(&self.config, namespace, user)
            && self.first_time(format!(
                "pvc {namespace}/{}",
                pvc.metadata.name.as_deref().unwrap_or_default()
            ))
        {
            let r = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace)
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

    /// Whether `what` is being prepared for the first time by this process.
    fn first_time(&self, what: String) -> bool {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(what)
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
        let mut unschedulable_since: Option<tokio::time::Instant> = None;
        loop {
            if let Some(pod) = self.cache.get(namespace, name) {
                let state = match state::interpret(&pod) {
                    // The scheduler may yet find a node: a pod being deleted
                    // frees its GPU, an autoscaler adds a node.
                    PodState::Failed(KubeFailure::Unschedulable { message }) => {
                        let since =
                            *unschedulable_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= self.config.unschedulable_timeout.0 {
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
            let patience = unschedulable_since.map(|t| t + self.config.unschedulable_timeout.0);
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
        if let Err(e) = self
            .prepare(&namespace, &spec.user, spec.group.as_deref(), &say)
            .await
        {
            // Another start may succeed where this one failed.
            self.prepared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            return Err(LaunchError::Kube(e));
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

    async fn ready(&self) -> Result<(), String> {
        if self.cache.is_synced() {
            Ok(())
        } else {
            Err("the kernel pod watch has not listed the pods yet (is the API server reachable, and does the Role allow it?)".into())
        }
    }

    async fn adopt(&self, known: &HashSet<uuid::Uuid>) -> Result<Vec<uuid::Uuid>, LaunchError> {
        // Bounded well within the gateway's liveness probe: a watch that
        // cannot list (RBAC, a network policy) must not crash-loop the
        // gateway; it starts, /readyz says why it is not ready, and the
        // watcher keeps retrying.
        if !self
            .synced(ADOPT_WAIT.min(self.config.launch_timeout.0))
            .await
        {
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
