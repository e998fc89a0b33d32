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
        // Landlock and seccomp confine the calling thread: any other would
        // stay free. Refused rather than trusted to a convention.
        let threads = crate::threads()?;
        if threads != 1 {
            return Err(std::io::Error::other(format!(
                "a handover needs a process with one thread, this one has {threads}"
            )));
        }
        // What `set_var` would panic on.
        if let Some((key, _)) = self
            .env
            .iter()
            .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
        {
            return Err(std::io::Error::other(format!(
                "the handover's environment has a variable no process can have: {key:?}"
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_is_refused_by_a_process_with_more_than_one_thread_before_it_changes_anything() {
        let other = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        let cwd = std::env::current_dir().unwrap();
        let handover = Handover {
            cwd: std::env::temp_dir(),
            env: vec![("ONLY".into(), "this".into())],
            limits: Limits::default(),
            confinement: None,
        };
        // SAFETY: it refuses before touching the environment.
        let e = unsafe { handover.apply() }.unwrap_err();
        assert!(e.to_string().contains("one thread"), "{e}");
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert!(std::env::var_os("ONLY").is_none());
        other.join().unwrap();
    }

    #[test]
    fn a_handover_and_its_ruleset_arrive_together_and_a_report_reads_back() {
        let (gateway, kernel) = crate::channel::pair().unwrap();
        let ruleset = tempfile::tempfile().unwrap();
        let handover = Handover {
            cwd: "/home/ada".into(),
            env: vec![("KERNEL_USERNAME".into(), "ada".into())],
            limits: Limits::default(),
            confinement: Some(Confinement {
                ruleset: Some(ruleset.into()),
                landlocked: true,
                ..Default::default()
            }),
        };
        handover.send(&gateway).unwrap();
        let got = Handover::receive(&kernel).unwrap();
        assert_eq!(got.cwd, std::path::Path::new("/home/ada"));
        assert_eq!(got.env, handover.env);
        assert!(got.confinement.unwrap().ruleset.is_some());
        Report::Listening.send(&kernel).unwrap();
        assert_eq!(Report::receive(&gateway).unwrap(), Some(Report::Listening));
        drop(kernel);
        assert_eq!(Report::receive(&gateway).unwrap(), None);
    }
}
