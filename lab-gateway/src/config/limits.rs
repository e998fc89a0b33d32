//! `[limits]` in lab.toml: what one user, and everyone together, may make
//! the gateway hold, read from sizes such as `"64 MiB"`.

use serde::Deserialize;

use super::{BudgetLimits, ConfigError, MessageLimits};

/// `[limits]`: sizes as a number of bytes or a string such as `"64 MiB"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// The most one message from a kernel may hold, per channel.
    pub iopub_message: Option<bytesize::ByteSize>,
    pub shell_message: Option<bytesize::ByteSize>,
    pub control_message: Option<bytesize::ByteSize>,
    pub stdin_message: Option<bytesize::ByteSize>,
    /// The largest request body (a notebook saved, a file uploaded).
    pub request_body: Option<bytesize::ByteSize>,
    /// The largest file the contents API reads.
    pub contents_file: Option<bytesize::ByteSize>,
    /// Kernels one user may run or queue at once, unless their quota says.
    pub kernels_per_user: Option<u32>,
    /// Websocket channel sessions one user may hold at once.
    pub sessions_per_user: Option<usize>,
    /// What one user's sessions may buffer for clients that are away.
    pub replay_per_user: Option<bytesize::ByteSize>,
    /// What all sessions together may buffer.
    pub replay_total: Option<bytesize::ByteSize>,
}

/// What one user, and everyone together, may make the gateway hold: beyond
/// these it refuses (a clear error) or drops (with a note to the cell).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub messages: MessageLimits,
    pub request_body: usize,
    pub contents_file: u64,
    /// The default cap on a user's kernels (a quota's `max_kernels` wins).
    pub kernels_per_user: u32,
    pub replay: BudgetLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            messages: Default::default(),
            // As Jupyter Server's default.
            request_body: 100 * 1024 * 1024,
            contents_file: 100 * 1024 * 1024,
            kernels_per_user: 16,
            replay: Default::default(),
        }
    }
}

impl LimitsFile {
    pub(super) fn resolve(&self) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let size = |v: Option<bytesize::ByteSize>, name: &str, default: usize| match v
            .map(|b| usize::try_from(b.as_u64()))
        {
            None => Ok(default),
            Some(Ok(n)) if n >= 1024 => Ok(n),
            Some(_) => Err(ConfigError::Invalid(format!(
                "limits.{name} must be at least 1 KiB and fit in memory"
            ))),
        };
        Ok(Limits {
            messages: MessageLimits {
                iopub: size(self.iopub_message, "iopub_message", d.messages.iopub)?,
                shell: size(self.shell_message, "shell_message", d.messages.shell)?,
                control: size(self.control_message, "control_message", d.messages.control)?,
                stdin: size(self.stdin_message, "stdin_message", d.messages.stdin)?,
            },
            request_body: size(self.request_body, "request_body", d.request_body)?,
            contents_file: size(
                self.contents_file,
                "contents_file",
                d.contents_file as usize,
            )? as u64,
            kernels_per_user: match self.kernels_per_user {
                Some(0) => {
                    return Err(ConfigError::Invalid(
                        "limits.kernels_per_user must be at least 1".into(),
                    ));
                }
                n => n.unwrap_or(d.kernels_per_user),
            },
            replay: BudgetLimits {
                sessions_per_user: match self.sessions_per_user {
                    Some(0) => {
                        return Err(ConfigError::Invalid(
                            "limits.sessions_per_user must be at least 1".into(),
                        ));
                    }
                    n => n.unwrap_or(d.replay.sessions_per_user),
                },
                bytes_per_user: size(
                    self.replay_per_user,
                    "replay_per_user",
                    d.replay.bytes_per_user,
                )?,
                bytes_total: size(self.replay_total, "replay_total", d.replay.bytes_total)?,
            },
        })
    }
}
