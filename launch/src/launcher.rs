//! The launch backend interface.
//!
//! A backend starts a kernel from a kernelspec's argv and says how to reach
//! it (a Jupyter connection file), then signals and stops it by a locator it
//! chose. The gateway stores the locator so a restarted gateway can find its
//! kernels again. Backends do not decide anything: admission happens before.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jupyter_protocol::ConnectionInfo;
use serde::{Deserialize, Serialize};

/// Everything a backend needs to start one kernel.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub kernel_id: uuid::Uuid,
    /// The kernelspec's argv; `{connection_file}` is replaced by the backend.
    pub argv: Vec<String>,
    /// The kernelspec's env plus the user's (KERNEL_USERNAME, …).
    pub env: BTreeMap<String, String>,
    /// The user's own folder: all of it is theirs to read and write.
    pub cwd: PathBuf,
    /// Where the kernel starts, when not in `cwd` itself: a folder inside
    /// it (the notebook's, as Jupyter starts a notebook's kernel). Ignored
    /// when it is not a folder inside `cwd`. Pods start in their image's
    /// working folder whatever it says.
    pub workdir: Option<PathBuf>,
    /// GPUs admitted for this kernel (`CUDA_VISIBLE_DEVICES`), empty for none.
    pub gpus: Vec<String>,
    /// Who the kernel is for, and their group (pod labels, Kueue queue).
    pub user: String,
    pub group: Option<String>,
    /// The admitted GPU model or MIG profile, for pod backends.
    pub gpu_model: Option<String>,
    /// CPU and memory as Kubernetes spells them (`2`, `8Gi`), for pod backends.
    pub cpu: Option<String>,
    pub memory: Option<String>,
    /// No network (grading kernels): the local sandbox grants no outbound
    /// port and no UDP; a pod is labelled `academy-lab.io/egress: none`, so
    /// only the offline NetworkPolicy selects it, which denies all egress
    /// (DNS included).
    pub offline: bool,
    /// The most memory the kernel may allocate, in bytes (grading kernels:
    /// their assignment's `memory_mb`). The local backend makes it each of
    /// the kernel's processes' `RLIMIT_DATA` (`local::child` says why that
    /// one), so an allocation past it fails in the cell that made it; pods
    /// get it as their memory request and limit.
    pub memory_limit: Option<u64>,
    /// The longest the kernel may live (a code submission's run): pods get
    /// it as `activeDeadlineSeconds`, so the cluster ends a run even if the
    /// gateway that started it is gone. The local backend leaves it to the
    /// gateway, which kills its kernels itself.
    pub deadline: Option<std::time::Duration>,
    /// Folders the kernel reads and never writes, each shown at a path in
    /// its own folder (a competition's participant files at
    /// `competitions/NAME`). The local backend puts a symlink there and
    /// grants its target read-only; pod backends mount them read-only
    /// where they can (see each backend).
    pub read_only: Vec<ReadOnlyMount>,
    /// Where a slow start reports what it is doing (pulling an image, …).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// The kernel speaks the launch channel (the `handover` crate; the
    /// academy kernels do): it says when it listens, and it can wait in a
    /// warm pool. Backends that have no channel ignore it.
    pub launch_channel: bool,
}

/// Whether a started kernel listens, as its backend knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    /// It said so: a client may connect now.
    Yes,
    /// It cannot start (it exited, or refused its handover); why.
    Failed(String),
    /// This backend or kernel cannot tell: ask the kernel (kernel_info).
    Unknown,
}

/// A folder a kernel reads, shown at a path inside its own folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlyMount {
    /// The folder, on the gateway's machine.
    pub source: PathBuf,
    /// Where the kernel sees it: relative to its folder, plain names only.
    pub at: PathBuf,
}

/// How to find a running kernel again, persisted by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum KernelLocator {
    /// A local process group, led by `pid`.
    Local {
        pid: i32,
        /// When that process started (`BOOT_ID/TICKS`), so a pid reused
        /// after a reboot or a wrap is never taken for the kernel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started: Option<String>,
    },
    /// A Kubernetes pod.
    Pod { namespace: String, name: String },
}

/// A started kernel.
#[derive(Debug, Clone)]
pub struct Launched {
    pub connection: ConnectionInfo,
    pub locator: KernelLocator,
}

/// Why a launch or a signal failed.
///
/// The trait's error knows no backend: what any backend can get wrong (the
/// spec, local I/O, a locator of another backend, a signal it cannot
/// deliver) has its own variant, and each backend's own failures (the
/// local backend's `LocalError`, the sandbox's `SandboxError`, the
/// Kubernetes backend's `KubeFailure`) travel boxed in
/// [`LaunchError::Backend`], converted in that backend's module: this
/// module names no backend. Callers that need the backend's
/// detail ask for it with [`LaunchError::backend_error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The spec cannot be launched by any backend (an empty argv).
    #[error("{0}")]
    Spec(String),
    /// I/O the launch needs failed: preparing the kernel's files, spawning it.
    #[error("cannot {doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
    #[error("this backend did not start that kernel ({0:?})")]
    Foreign(KernelLocator),
    #[error("cannot signal the kernel: {0}")]
    NoSignals(String),
    /// A backend's own failure, as that backend words it (the user reads it).
    #[error("{source}")]
    Backend {
        /// Which backend failed (`local`, `sandbox`, `kube`); the metric label.
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LaunchError {
    /// A backend's own failure.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> LaunchError {
        LaunchError::Backend {
            backend,
            source: source.into(),
        }
    }

    /// A short, fixed label for failure metrics: the variant, or for a
    /// backend's failure the backend's name.
    pub fn metric_label(&self) -> &'static str {
        match self {
            LaunchError::Spec(_) => "spec",
            LaunchError::Io { .. } => "io",
            LaunchError::Foreign(_) => "foreign",
            LaunchError::NoSignals(_) => "no_signals",
            LaunchError::Backend { backend, .. } => backend,
        }
    }

    /// The backend's own error, if this is a backend failure of type `E`.
    pub fn backend_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            LaunchError::Backend { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }
}

/// Signals a backend can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelSignal {
    /// SIGINT, for kernels whose interrupt_mode is "signal".
    Interrupt,
    /// SIGKILL to the whole process group.
    Kill,
}

#[async_trait::async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Starts a kernel; returns once its process exists (not once it answers).
    async fn launch(&self, spec: LaunchSpec) -> Result<Launched, LaunchError>;
    async fn signal(
        &self,
        locator: &KernelLocator,
        signal: KernelSignal,
    ) -> Result<(), LaunchError>;
    /// Waits until the kernel says it listens, where it can say so; else
    /// answers [`Listening::Unknown`] at once. Asked once per start.
    async fn listening(&self, _kernel_id: uuid::Uuid) -> Listening {
        Listening::Unknown
    }
    /// Starts a kernel for nobody yet, into a warm pool: `spec` is the
    /// pool's (no user, its own folder). Returns once the kernel waits for
    /// its [`Launcher::hand_over`]. Backends without a pool refuse.
    async fn prespawn(&self, _spec: LaunchSpec) -> Result<Launched, LaunchError> {
        Err(LaunchError::Spec("this backend keeps no warm pool".into()))
    }
    /// Makes the prespawned kernel `spec.kernel_id` the kernel `spec`
    /// describes (its user's folder, environment, limits, confinement),
    /// as if it had been launched so. Then [`Launcher::listening`] tells
    /// when it listens.
    async fn hand_over(&self, _spec: LaunchSpec) -> Result<(), LaunchError> {
        Err(LaunchError::Spec("this backend keeps no warm pool".into()))
    }
    /// Whether the kernel's process still runs.
    async fn is_alive(&self, locator: &KernelLocator) -> bool;
    /// Frees what the backend holds for a kernel that is gone (files, pods).
    async fn cleanup(&self, kernel_id: uuid::Uuid, locator: &KernelLocator);
    /// The end of what the kernel wrote to stdout and stderr, to explain a failed start.
    async fn log_tail(&self, kernel_id: uuid::Uuid, max_bytes: usize) -> String;
    /// Whether the backend can start and watch kernels now (`/readyz`);
    /// the reason when it cannot.
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    /// At gateway start: keeps the running kernels in `known` and stops any
    /// other this backend owns (orphans of a gateway that died); returns the
    /// ids of the stopped ones.
    async fn adopt(
        &self,
        _known: &std::collections::HashSet<uuid::Uuid>,
    ) -> Result<Vec<uuid::Uuid>, LaunchError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the fake backend broke")]
    struct FakeError;

    #[test]
    fn a_backend_failure_keeps_its_words_its_label_and_its_type() {
        let e = LaunchError::backend("fake", FakeError);
        assert_eq!(e.to_string(), "the fake backend broke");
        assert_eq!(e.metric_label(), "fake");
        assert!(e.backend_error::<FakeError>().is_some());
        assert!(e.backend_error::<std::io::Error>().is_none());
    }

    #[test]
    fn generic_failures_have_fixed_labels() {
        let io = LaunchError::Io {
            doing: "start x".into(),
            source: std::io::Error::other("no"),
        };
        assert_eq!(io.to_string(), "cannot start x: no");
        assert_eq!(io.metric_label(), "io");
        assert_eq!(LaunchError::Spec("empty".into()).metric_label(), "spec");
        assert!(
            LaunchError::Spec("empty".into())
                .backend_error::<FakeError>()
                .is_none()
        );
    }
}
