//! The shapes of the Jupyter models the gateway answers with, for the
//! document only: the handlers build them as JSON (their field names and
//! formats are Kernel Gateway's, see `shared/reference`), and
//! `tests/test_openapi.py` checks real answers against these schemas, so the
//! two cannot drift apart unnoticed.

#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

/// An error: the status's reason phrase and what went wrong. Refused
/// admissions add `limit`, `current`, `maximum` and maybe `resets_at`;
/// caps add what was made and the cap.
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The HTTP reason phrase, e.g. "Not Found".
    reason: String,
    /// What went wrong, for a person.
    message: String,
}

/// A kernel, as Kernel Gateway models it: running; launching
/// (`execution_state` `starting`, with `launch.progress`); waiting for
/// admission (`queued`, with `queue`); or a start that failed or was
/// cancelled (`dead`, with `reason`).
#[derive(ToSchema)]
pub struct Kernel {
    id: String,
    /// The kernel spec's name.
    name: String,
    /// `%Y-%m-%dT%H:%M:%S.%fZ`.
    #[schema(format = DateTime)]
    last_activity: String,
    /// `queued`, `starting`, `idle`, `busy`, `restarting` or `dead`.
    execution_state: String,
    /// Websockets open on it.
    connections: u64,
    /// The GPUs, memory and CPUs it was granted.
    resources: Option<Value>,
    /// Where a launching start stands (`progress`: the image pull, the node).
    launch: Option<Value>,
    /// Where a queued start stands: `position`, `eta_seconds`, `gpu_model`,
    /// `waiting_for`.
    queue: Option<Value>,
    /// Why a start failed or was cancelled.
    reason: Option<String>,
}

/// A kernel spec as `jupyter kernelspec list --json` shows it.
#[derive(ToSchema)]
pub struct KernelSpec {
    name: String,
    /// `display_name`, `language`, `argv`, `metadata` (GPUs asked for).
    spec: Value,
    /// URLs of the logos.
    resources: Value,
}

/// Every kernel spec, and the default one.
#[derive(ToSchema)]
pub struct KernelSpecs {
    default: String,
    /// By name.
    kernelspecs: std::collections::BTreeMap<String, KernelSpec>,
}

/// A notebook (or console) tied to its kernel.
#[derive(ToSchema)]
pub struct Session {
    id: String,
    path: String,
    name: String,
    /// `notebook`, `console` or `file`.
    #[schema(rename = "type")]
    kind: String,
    kernel: Kernel,
    notebook: Value,
}

/// A file, notebook or directory, as Jupyter Server's contents API models
/// it; `content` is null without `content=1`.
#[derive(ToSchema)]
pub struct Contents {
    name: String,
    path: String,
    /// `file`, `notebook` or `directory`.
    #[schema(rename = "type")]
    kind: String,
    writable: bool,
    #[schema(format = DateTime)]
    created: String,
    #[schema(format = DateTime)]
    last_modified: String,
    mimetype: Option<String>,
    /// Text, base64, a notebook, or a directory's entries.
    content: Option<Value>,
    /// `text`, `base64` or `json`.
    format: Option<String>,
    size: Option<u64>,
}

/// A checkpoint of a file.
#[derive(ToSchema)]
pub struct Checkpoint {
    id: String,
    #[schema(format = DateTime)]
    last_modified: String,
}

/// A file's model, or the list of its checkpoints (`…/checkpoints`).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ContentsOrCheckpoints {
    Model(Contents),
    Checkpoints(Vec<Checkpoint>),
}

/// A new file's model, or a new checkpoint (`POST …/checkpoints`).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ContentsOrCheckpoint {
    Model(Contents),
    Checkpoint(Checkpoint),
}
