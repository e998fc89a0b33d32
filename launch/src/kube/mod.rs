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
//!
//! Modules by job: [`config`] is `[kubernetes]`, [`pod`] builds the objects
//! the API server receives, [`state`] reads a pod's status, `cache` mirrors
//! the pods, `wait` waits on that mirror, `prepare` makes what a user's
//! kernels need beside their pods, `backend` is [`KubeLauncher`], [`error`]
//! words what failed, and [`kueue`] renders `lab k8s render-quotas`.

mod backend;
mod cache;
pub mod config;
pub mod egress;
pub mod error;
pub mod kueue;
pub mod pod;
mod prepare;
pub mod state;
mod wait;

pub use backend::KubeLauncher;
pub use config::{KubeConfig, Timeout};
pub use error::KubeFailure;
