//! Why a kernel could not be confined, and how that becomes the launch
//! trait's backend failure (labelled `sandbox`).

use std::path::PathBuf;

use crate::launcher::LaunchError;

/// Why a kernel could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot build the kernel's Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("cannot list {path} to keep the gateway's files from the kernel: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the kernel's seccomp filter: {0}")]
    Seccomp(#[from] seccompiler::BackendError),
    #[error("a path the kernel needs holds a NUL byte: {0}")]
    Nul(#[from] std::ffi::NulError),
    #[error(
        "the sandbox is required, but this Linux ({release}) does not fully support Landlock ABI {wanted} (it has {found}); start with --sandbox best-effort or --sandbox off to accept less"
    )]
    Unsupported {
        wanted: i32,
        found: String,
        release: String,
    },
}

impl From<SandboxError> for LaunchError {
    fn from(e: SandboxError) -> Self {
        LaunchError::backend("sandbox", e)
    }
}
