//! The one error type of the kernel runtime.
//!
//! Errors that a cell causes are not here: they are [`crate::engine::CellError`]
//! values sent to the client as `error` messages. These are failures of the
//! kernel process itself (bad connection file, sockets that cannot bind).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    #[error("cannot read connection file {path}: {source}")]
    ConnectionFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connection file {path} is not valid: {source}")]
    ConnectionFileFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "connection file {path} asks for signature scheme {scheme:?}; only hmac-sha256 is supported"
    )]
    SignatureScheme { path: PathBuf, scheme: String },
    #[error("cannot open the {channel} channel: {source}")]
    Channel {
        channel: &'static str,
        #[source]
        source: jupyter_zmq_client::RuntimeError,
    },
    #[error("the {0} engine failed to start: {1}")]
    EngineStart(&'static str, String),
    #[error("cannot install kernelspec into {path}: {source}")]
    Install {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    InstallTarget(String),
}
