//! What can go wrong with a kernel pod, in words a user can act on, and how
//! that becomes the launch trait's backend failure (labelled `kube`).

use std::time::Duration;

use crate::launcher::LaunchError;

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

impl From<KubeFailure> for LaunchError {
    fn from(failure: KubeFailure) -> LaunchError {
        LaunchError::backend("kube", failure)
    }
}
