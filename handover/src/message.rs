//! The launch channel's messages, as JSON: a kernel's [`Report`]s, and the
//! gateway's [`Handover`] of a pooled kernel to its user.

use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::channel::End;
use crate::confinement::Confinement;
use crate::limits::Limits;

/// What a kernel tells its gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// A pooled kernel is loaded and waits for its [`Handover`].
    Waiting,
    /// All five sockets listen: a client may connect now.
    Listening,
    /// The kernel cannot go on (a handover it cannot apply); it exits.
    Failed { reason: String },
}

impl Report {
    pub fn send(&self, end: &End) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        end.send(&bytes, &[])
    }

    /// The next report; `None` when the kernel's end is closed.
    pub fn receive(end: &End) -> Result<Option<Report>, HandoverError> {
        match end.recv()? {
            None => Ok(None),
            Some((bytes, _)) => Ok(Some(serde_json::from_slice(&bytes)?)),
        }
    }
}

/// What makes a pooled kernel its user's: what a cold start of the same
/// kernel would have had from its first instruction.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// The folder it works in.
    pub cwd: PathBuf,
    /// Its whole environment (replacing the one it was started with).
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    /// `None` for an unconfined kernel (`--sandbox off`).
    pub confinement: Option<Confinement>,
}

/// A handover that cannot be sent, read or applied.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("the launch channel failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a launch message is not understood: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("the gateway closed the launch channel before the handover")]
    Closed,
    #[error("the handover's confinement came without its Landlock ruleset")]
    NoRuleset,
}

impl Handover {
    /// Sends it, with the ruleset's descriptor beside it.
    pub fn send(&self, end: &End) -> Result<(), HandoverError> {
        let bytes = serde_json::to_vec(self)?;
        let fds: Vec<_> = self
            .confinement
            .iter()
            .filter_map(|c| c.ruleset.as_ref().map(|r| r.as_fd()))
            .collect();
        end.send(&bytes, &fds)?;
        Ok(())
    }

    /// Waits for the handover; [`HandoverError::Closed`] when the gateway
    /// went away first.
    pub fn receive(end: &End) -> Result<Handover, HandoverError> {
        let (bytes, mut fds) = end.recv()?.ok_or(HandoverError::Closed)?;
        let mut handover: Handover = serde_json::from_slice(&bytes)?;
        if let Some(c) = &mut handover.confinement
            && c.landlocked
        {
            c.ruleset = Some(fds.pop().ok_or(HandoverError::NoRuleset)?);
        }
        Ok(handover)
    }

    /// Makes this process what the handover says: its limits, its folder,
    /// its environment, then its confinement (last: it may take away the
    /// rights the steps before it need).
    ///
    /// # Safety
    /// Replaces the environment: call it while this process has one thread.
    pub unsafe fn apply(&self) -> std::io::Result<()> {
        self.limits.apply()?;
        std::env::set_current_dir(&self.cwd)?;
        let old: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
        // SAFETY: the caller guarantees a single thread.
        unsafe {
            for key in old {
                std::env::remove_var(key);
            }
            for (key, value) in &self.env {
                std::env::set_var(key, value);
            }
        }
        match &self.confinement {
            Some(c) => c.apply(),
            None => Ok(()),
        }
    }
}
