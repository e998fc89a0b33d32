//! Why a start or an action on a kernel failed, as types.
//!
//! A failure keeps its type from where it happens to the edge: through the
//! queue (a queued start that fails later is answered with the same error),
//! into the failure metric (labelled by [`StartError::reason`]), and to HTTP,
//! which `crate::error` maps in one place.

use std::sync::Arc;

use scheduler::Refusal;

/// Why a kernel did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    #[error("no kernelspecs are installed")]
    NoSpecs,
    #[error("No such kernel spec: {0}")]
    NoSuchSpec(String),
    /// The start request asks for something malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The kernelspec itself is broken (an operator's mistake).
    #[error("kernelspec {spec} declares invalid resources: {detail}")]
    BadSpec { spec: String, detail: String },
    /// Admission said no (a quota, a role's limit, the lab's capacity).
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// The backend could not start the process or pod.
    #[error("kernel {spec} failed to start: {source}")]
    Launch {
        spec: String,
        #[source]
        source: Arc<launch::LaunchError>,
    },
    /// The process started but never answered a kernel_info_request.
    #[error("kernel {spec} did not answer within {seconds}s{}", log_suffix(.log))]
    NotReady {
        spec: String,
        seconds: u64,
        log: String,
    },
    /// The process ended before it answered.
    #[error("kernel {spec} exited while starting{}", log_suffix(.log))]
    Exited { spec: String, log: String },
    /// It ran, but its record could not be written, so it was stopped.
    #[error("the kernel started but could not be recorded, so it was stopped: {0}")]
    NotRecorded(Arc<crate::store::StoreError>),
    /// Still waiting for a GPU when the caller could wait no longer.
    #[error(
        "kernel {id} is queued for a GPU at position {position}; GET /api/kernels/{id} shows when it starts"
    )]
    StillQueued { id: uuid::Uuid, position: usize },
    #[error("cancelled")]
    Cancelled,
    /// A start restored under an id that a kernel already has.
    #[error("kernel {0} exists already")]
    IdTaken(uuid::Uuid),
}

fn log_suffix(log: &str) -> String {
    let log = log.trim();
    if log.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{log}")
    }
}

impl StartError {
    /// A short label for the failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::NoSpecs | StartError::NoSuchSpec(_) => "no_spec",
            StartError::BadRequest(_) => "bad_request",
            StartError::BadSpec { .. } => "bad_spec",
            StartError::Refused(_) => "refused",
            StartError::Launch { .. } => "launch",
            StartError::NotReady { .. } => "not_ready",
            StartError::Exited { .. } => "exited",
            StartError::NotRecorded(_) => "not_recorded",
            StartError::StillQueued { .. } => "still_queued",
            StartError::Cancelled => "cancelled",
            StartError::IdTaken(_) => "id_taken",
        }
    }
}

/// Why an action on a kernel (interrupt, restart, shutdown) failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("Kernel does not exist: {0}")]
    NotFound(String),
    #[error("kernel {0} is queued and not running yet")]
    NotRunning(String),
    #[error("the kernel did not answer the interrupt")]
    InterruptUnanswered,
    #[error("cannot signal the kernel: {0}")]
    Signal(#[source] launch::LaunchError),
    #[error("restart failed: {0}")]
    Restart(#[source] StartError),
    /// The queued start a caller waited on failed.
    #[error("{0}")]
    Failed(#[source] StartError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
