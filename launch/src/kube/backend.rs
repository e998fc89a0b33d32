//! [`KubeLauncher`]: the launch trait over the cluster. A launch makes what
//! the user's kernels need (`prepare`), creates the pod, then the Secret
//! with its connection file (owned by the pod, so it goes when the pod
//! goes), waits until the pod is Ready (`wait`) and connects to its IP;
//! a kill deletes the pod with its grace period and waits until it is gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jupyter_protocol::{ConnectionInfo, Transport};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, LogParams, PostParams, PropagationPolicy};

use super::cache::{PodCache, mirror};
use super::config::KubeConfig;
use super::error::KubeFailure;
use super::pod::{self, KERNEL_PORTS, KernelPod};
use super::prepare::Prepared;
use super::state::{self, PodState};
use super::wait;
use crate::launcher::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher};

/// How long the gateway's start waits for the pod watch before adopting.
const ADOPT_WAIT: Duration = Duration::from_secs(30);

/// The Kubernetes backend: one pod per kernel, one watch for all of them.
pub struct KubeLauncher {
    client: kube::Client,
    config: KubeConfig,
    cache: Arc<PodCache>,
    /// What `prepare` already made (namespaces, policies, queues, PVCs).
    prepared: Prepared,
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
        let (cache, writer) = PodCache::new();
        let api: Api<Pod> = if config.namespace_per_user.is_some() {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), &config.namespace)
        };
        let task = tokio::spawn(mirror(api, writer, cache.clone()));
        KubeLauncher {
            client,
            config,
            cache,
            prepared: Prepared::default(),
            watcher: task.abort_handle(),
        }
    }

    /// A client from the environment: the pod's service account in the
    /// cluster, else `KUBECONFIG` or `~/.kube/config`.
    pub async fn from_env(config: KubeConfig) -> Result<KubeLauncher, LaunchError> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| LaunchError::from(KubeFailure::Api(format!("no cluster: {e}"))))?;
        Ok(KubeLauncher::new(client, config))
    }

    pub fn config(&self) -> &KubeConfig {
        &self.config
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
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
        if !self
            .cache
            .gone(namespace, name, grace + Duration::from_secs(15))
            .await
        {
            tracing::warn!(pod = name, "the deleted kernel pod is still terminating");
        }
        Ok(())
    }
}

/// Where the pod works and what it reads, on the shared data claim: the
/// launch's folder and read-only folders as paths on it. Without a shared
/// claim the pod has its own volume and no read-only folders (the gateway's
/// folders are not on the nodes).
fn shared_folders(
    config: &KubeConfig,
    spec: &LaunchSpec,
) -> Result<(Option<String>, Vec<pod::SharedFolder>), LaunchError> {
    let Some(shared) = &config.shared_data else {
        // An offline run (a code submission's) reads its files and leaves
        // its output in its folder: without the shared claim it could do
        // neither, and its failure would be charged to its notebook.
        if spec.offline && !spec.read_only.is_empty() {
            return Err(LaunchError::Spec(
                "an offline run with read-only folders needs [kubernetes.shared_data]".into(),
            ));
        }
        if !spec.read_only.is_empty() {
            tracing::debug!(user = %spec.user, "no [kubernetes.shared_data]: the pod gets no read-only folders");
        }
        return Ok((None, Vec::new()));
    };
    let on_claim = |path: &std::path::Path, what: &str| {
        relative_plain(path.strip_prefix(&shared.mount).ok()).ok_or_else(|| {
            LaunchError::Spec(format!(
                "{what} {} is not a folder on the shared data volume (mounted at {})",
                path.display(),
                shared.mount.display()
            ))
        })
    };
    let work = on_claim(&spec.cwd, "the kernel's folder")?;
    let read_only = spec
        .read_only
        .iter()
        .map(|m| {
            Ok(pod::SharedFolder {
                sub_path: on_claim(&m.source, "the read-only folder")?,
                at: relative_plain(Some(&m.at)).ok_or_else(|| {
                    LaunchError::Spec(format!(
                        "a read-only folder's place {:?} is not a plain relative path",
                        m.at
                    ))
                })?,
            })
        })
        .collect::<Result<_, LaunchError>>()?;
    Ok((Some(work), read_only))
}

/// `path` as a subPath: relative, not empty, plain names only (no `..`).
fn relative_plain(path: Option<&std::path::Path>) -> Option<String> {
    let path = path?;
    let plain = path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let text = path.to_str()?;
    (plain && !text.is_empty()).then(|| text.to_owned())
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
            return Err(LaunchError::Spec("the kernelspec has an empty argv".into()));
        }
        let (work, read_only) = shared_folders(&self.config, &spec)?;
        // The notebook's folder, inside the work folder (only where the pod
        // works in the user's folder as the gateway sees it).
        let start_in = work.as_ref().and_then(|_| {
            let folder = spec.workdir.as_ref()?.strip_prefix(&spec.cwd).ok()?;
            relative_plain(Some(folder))
        });
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
            // A launch's memory limit is the pod's (request = limit).
            memory: spec
                .memory_limit
                .map(|bytes| bytes.to_string())
                .or_else(|| spec.memory.clone()),
            // No egress at all (a grading kernel): the offline
            // NetworkPolicy selects it (`prepare` makes it in a user
            // namespace before the pod exists; k8s/base has it in the
            // shared one).
            offline: spec.offline,
            work,
            start_in,
            read_only,
            deadline_s: spec
                .deadline
                .map(|d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)),
        };
        let pod = pod::build_pod(&self.config, &kernel);
        pod::check_extended_resources(&pod).map_err(KubeFailure::Invalid)?;
        let namespace = pod::namespace_for(&self.config, &spec.user);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let say = |m: String| {
            if let Some(p) = &spec.progress {
                let _ = p.send(m);
            }
        };
        if let Err(e) = self
            .prepared
            .prepare(
                &self.client,
                &self.config,
                &namespace,
                &spec.user,
                spec.group.as_deref(),
                &say,
            )
            .await
        {
            // Another start may succeed where this one failed.
            self.prepared.forget();
            return Err(e.into());
        }
        let created = self
            .pods(&namespace)
            .create(&PostParams::default(), &pod)
            .await
            .map_err(KubeFailure::from_api)?;
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
            .map_err(|e| KubeFailure::Api(e.to_string()))?;
        let secret = pod::build_secret(&created, file);
        let outcome = match Api::<Secret>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &secret)
            .await
        {
            Ok(_) => {
                wait::until_ready(
                    &self.cache,
                    &self.config,
                    &namespace,
                    &name,
                    spec.progress.as_ref(),
                )
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
                Err(failure.into())
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
                .map_err(LaunchError::from),
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
            .pick(|(k, p)| {
                let label = p.metadata.labels.as_ref()?.get(pod::LABEL_KERNEL_ID);
                (label == Some(&id)).then(|| k.clone())
            })
            .into_iter()
            .next();
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
            .cache
            .synced(ADOPT_WAIT.min(self.config.launch_timeout.0))
            .await
        {
            return Err(
                KubeFailure::Api("the kernel pod watch did not list the pods".into()).into(),
            );
        }
        let owned: Vec<(String, String, Option<uuid::Uuid>)> =
            self.cache.pick(|((ns, name), p)| {
                let id = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(pod::LABEL_KERNEL_ID))
                    .and_then(|v| v.parse().ok());
                Some((ns.clone(), name.clone(), id))
            });
        let mut orphans = Vec::new();
        for (ns, name, id) in owned {
            if id.is_some_and(|id| known.contains(&id)) {
                continue;
            }
            tracing::info!(pod = %name, namespace = %ns, "deleting an orphaned kernel pod");
            self.delete_pod(&ns, &name)
                .await
                .map_err(LaunchError::from)?;
            orphans.extend(id);
        }
        Ok(orphans)
    }
}
