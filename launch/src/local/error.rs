//! The local backend's own failures, and how they become the launch trait's
//! backend failure (labelled `local`).

use crate::launcher::LaunchError;

/// The local backend's own failures (labelled `local`).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("no free ports for the kernel: {0}")]
    Ports(String),
    #[error("cannot signal kernel process {pid}: {errno}")]
    Signal { pid: i32, errno: nix::errno::Errno },
    /// A warm-pool kernel could not be started or handed over.
    #[error("warm pool: {0}")]
    Pool(String),
}

impl From<LocalError> for LaunchError {
    fn from(e: LocalError) -> LaunchError {
        LaunchError::backend("local", e)
    }
}
