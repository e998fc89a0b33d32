//! The local backend: each kernel is a process tree on this machine.
//!
//! The kernel gets a fresh connection file (mode 0600) with a random key,
//! its user's working directory, and an environment built from scratch, so
//! none of the gateway's secrets reach it. It leads its own process group
//! (an interrupt goes to the group) and is a child subreaper, so a kill
//! reaches everything it started, even a process that left the group with
//! `setsid` or double-forked ([`tree`]). A launch's memory limit is each of
//! its processes' `RLIMIT_DATA` ([`child`] says why that one, and what the
//! sandbox closes that it does not count).
//!
//! Processes are reaped by a thread each, so a kernel that dies is seen as
//! dead at once and never lingers as a zombie; where the gateway adopts
//! orphans ([`LocalLauncher::adopting_orphans`]), what a kernel left
//! running when it exited is killed then ([`reaper`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::launcher::{
    KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher, Listening,
};
use crate::sandbox::Sandbox;

mod child;
mod env;
mod error;
mod pooled;
mod ports;
mod process;
mod reaper;
mod shares;
mod start;
#[cfg(test)]
mod tests;
mod tree;

pub use env::kernel_env;
pub use error::LocalError;
use process::{command_lines, is_same_process, pid_reused};
pub use process::{is_process_running, process_start};

pub struct LocalLauncher {
    /// Where connection files live (the gateway's runtime dir).
    runtime_dir: PathBuf,
    /// What keeps kernels away from the gateway's data; `None` runs them
    /// as plain processes.
    sandbox: Option<Sandbox>,
    /// The launch channels of kernels that have not said they listen yet
    /// (the warm pool's among them), by kernel id.
    channels: parking_lot::Mutex<HashMap<uuid::Uuid, pooled::Channel>>,
}

impl LocalLauncher {
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Self {
        LocalLauncher {
            runtime_dir: runtime_dir.into(),
            sandbox: None,
            channels: Default::default(),
        }
    }

    /// Confines every kernel started from now on (see [`crate::sandbox`]).
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Makes this process the subreaper of what its kernels leave running
    /// when they exit, and kills it then ([`reaper`]). Process-wide: only
    /// for a process whose only children are its kernels (`lab serve`).
    pub fn adopting_orphans(self) -> std::io::Result<Self> {
        reaper::adopt_orphans()?;
        Ok(self)
    }

    /// A kernel's private temp dir: other kernels' temp files are out of
    /// its reach, and it is removed with the kernel.
    fn temp_dir(&self, kernel_id: uuid::Uuid) -> PathBuf {
        self.runtime_dir.join(format!("kernel-{kernel_id}.tmp"))
    }

    fn connection_file(&self, kernel_id: uuid::Uuid) -> PathBuf {
        self.runtime_dir.join(format!("kernel-{kernel_id}.json"))
    }

    fn log_file(&self, kernel_id: uuid::Uuid) -> PathBuf {
        self.runtime_dir.join(format!("kernel-{kernel_id}.log"))
    }
}

impl LocalLauncher {
    /// The cargo home of `user`'s confined kernels, `DATA/cargo/USER`: what
    /// they download and compile is theirs alone. None for unconfined
    /// kernels (they could write any cargo home) and pooled ones (no user
    /// yet), which keep the shared one.
    fn user_cargo_home(&self, user: &str) -> Option<PathBuf> {
        let plain = !user.is_empty() && !user.starts_with('.') && !user.contains('/');
        (self.sandbox.is_some() && plain).then(|| {
            let data_dir = self.runtime_dir.parent().unwrap_or(&self.runtime_dir);
            data_dir.join("cargo").join(user)
        })
    }

    /// The kernelspec's own files its argv names (a launcher script, a
    /// config): absolute paths of existing regular files, read only. The
    /// argv comes from an installed kernelspec, never from a user; nothing
    /// under the gateway's data dir qualifies.
    fn spec_files(&self, args: &[String]) -> Vec<PathBuf> {
        let data_dir = self.runtime_dir.parent().unwrap_or(&self.runtime_dir);
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        args.iter()
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_file())
            .filter_map(|p| p.canonicalize().ok())
            .filter(|p| !p.starts_with(&data_dir))
            .collect()
    }
}

/// Kills the process `pid`, a kernel no record names: its tree and group
/// while it is held; else, where it has exited (a zombie: its pid is still
/// its own) and led a group, the group. Whether anything was killed.
fn kill_unrecorded(pid: i32) -> bool {
    let Some(found) = tree::entry(pid) else {
        return false;
    };
    if let Some(held) = tree::Held::hold(&found) {
        tree::kill_tree(&held);
        return true;
    }
    let pid = Pid::from_raw(pid);
    found.zombie
        && nix::unistd::getpgid(Some(pid)) == Ok(pid)
        && killpg(pid, Signal::SIGKILL).is_ok()
}

/// The kernel process `pid`, held by a pidfd, if it is the one that
/// started at `started`. A locator older than start times gets `None`: its
/// group is killed, as it always was, but no tree is walked from a pid that
/// may be a stranger's.
fn held_kernel(pid: i32, started: Option<&str>) -> Option<tree::Held> {
    let held = tree::Held::hold(&tree::entry(pid)?)?;
    // Held first, checked second: the pidfd is the process checked.
    (started.is_some() && process_start(pid).as_deref() == started).then_some(held)
}

#[async_trait::async_trait]
impl Launcher for LocalLauncher {
    async fn launch(&self, spec: LaunchSpec) -> Result<Launched, LaunchError> {
        let connection = self.make_files(&spec).await?;
        let prepared = self.prepare(&spec, &connection)?;
        if !spec.launch_channel {
            return self.spawn(&spec, connection, prepared, None);
        }
        let (gateway_end, kernel_end) =
            handover::channel::pair().map_err(|source| LaunchError::Io {
                doing: "make a launch channel".into(),
                source,
            })?;
        let launched = self.spawn(&spec, connection.clone(), prepared, Some(&kernel_end))?;
        drop(kernel_end);
        match pooled::Channel::new(gateway_end, connection, false) {
            Ok(channel) => {
                self.channels.lock().insert(spec.kernel_id, channel);
            }
            // The start goes on; the gateway asks the kernel instead.
            Err(e) => {
                tracing::warn!(kernel_id = %spec.kernel_id, error = %e, "cannot watch a launch channel")
            }
        }
        Ok(launched)
    }

    async fn listening(&self, kernel_id: uuid::Uuid) -> Listening {
        self.wait_listening(kernel_id).await
    }

    async fn prespawn(&self, spec: LaunchSpec) -> Result<Launched, LaunchError> {
        self.start_pooled(spec).await
    }

    async fn hand_over(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        self.give(spec).await
    }

    async fn signal(
        &self,
        locator: &KernelLocator,
        signal: KernelSignal,
    ) -> Result<(), LaunchError> {
        let KernelLocator::Local { pid, started } = locator else {
            return Err(LaunchError::Foreign(locator.clone()));
        };
        if pid_reused(*pid, started.as_deref()) {
            // The kernel is gone and its pid belongs to someone else now.
            return Ok(());
        }
        let sig = match signal {
            KernelSignal::Interrupt => Signal::SIGINT,
            KernelSignal::Kill => {
                // Its whole tree and its group, what left the group
                // included, while the kernel is held (`/proc` walks: not
                // on an async worker).
                let (pid, started) = (*pid, started.clone());
                let killed = tokio::task::spawn_blocking(move || {
                    held_kernel(pid, started.as_deref()).map(|kernel| tree::kill_tree(&kernel))
                })
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(pid, error = %e, "the tree kill did not finish");
                    None
                });
                if let Some(killed) = killed {
                    tracing::debug!(pid, killed, "killed a kernel's process tree and group");
                    return Ok(());
                }
                Signal::SIGKILL
            }
        };
        // Its leader may be gone while its children live on in its group
        // (a kernel that forked, then exited on a shutdown request): the
        // group is signalled all the same. (A kernel still held had its
        // group killed with its tree, through its pidfd, above.)
        match killpg(Pid::from_raw(*pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(errno) => Err(LocalError::Signal { pid: *pid, errno }.into()),
        }
    }

    async fn is_alive(&self, locator: &KernelLocator) -> bool {
        let KernelLocator::Local { pid, started } = locator else {
            return false;
        };
        is_process_running(*pid) && is_same_process(*pid, started.as_deref())
    }

    async fn cleanup(&self, kernel_id: uuid::Uuid, _locator: &KernelLocator) {
        let files = [
            std::fs::remove_file(self.connection_file(kernel_id)),
            std::fs::remove_file(self.log_file(kernel_id)),
            std::fs::remove_dir_all(self.temp_dir(kernel_id)),
        ];
        // Gone already is fine (cleanup may run twice); anything else leaves
        // a kernel's files behind, which is worth a line in the log.
        for e in files.into_iter().filter_map(Result::err) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%kernel_id, error = %e, "cannot remove a kernel's files");
            }
        }
        ports::release(kernel_id);
        self.channels.lock().remove(&kernel_id);
    }

    async fn log_tail(&self, kernel_id: uuid::Uuid, max_bytes: usize) -> String {
        let text = std::fs::read(self.log_file(kernel_id)).unwrap_or_default();
        let start = text.len().saturating_sub(max_bytes);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// At gateway start: stops the kernels that still have a connection file
    /// in the runtime dir but are not in `known` (a start whose record was
    /// never written, a warm-pool kernel of a gateway that was killed), and
    /// removes their files. Such a kernel is found by its connection file's
    /// path on its command line, and its whole tree and group are killed.
    async fn adopt(
        &self,
        known: &std::collections::HashSet<uuid::Uuid>,
    ) -> Result<Vec<uuid::Uuid>, LaunchError> {
        let Ok(entries) = std::fs::read_dir(&self.runtime_dir) else {
            return Ok(Vec::new());
        };
        let unknown: Vec<uuid::Uuid> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let id = name
                    .to_str()?
                    .strip_prefix("kernel-")?
                    .strip_suffix(".json")?;
                id.parse::<uuid::Uuid>().ok()
            })
            .filter(|id| !known.contains(id))
            .collect();
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let files: Vec<(uuid::Uuid, String)> = unknown
            .into_iter()
            .map(|id| (id, self.connection_file(id).display().to_string()))
            .collect();
        // `/proc` walks and tree kills: on the blocking pool.
        let found = tokio::task::spawn_blocking(move || {
            let processes = command_lines();
            files
                .into_iter()
                .map(|(id, file)| {
                    let mut found = false;
                    for (pid, _) in processes.iter().filter(|(_, cmd)| cmd.contains(&file)) {
                        tracing::warn!(kernel_id = %id, pid, "stopping a kernel that has no record");
                        found |= kill_unrecorded(*pid);
                    }
                    (id, found)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| LaunchError::Io {
            doing: "stop the kernels that have no record".into(),
            source: std::io::Error::other(e),
        })?;
        let mut stopped = Vec::new();
        for (id, found) in found {
            let gone = KernelLocator::Local {
                pid: 0,
                started: None,
            };
            self.cleanup(id, &gone).await;
            if found {
                stopped.push(id);
            }
        }
        Ok(stopped)
    }
}

/// Where a kernel starts: `workdir` when it is a folder inside `home`
/// (checked on the real paths, so a symlink out does not count), else
/// `home`.
fn start_in<'a>(home: &'a Path, workdir: Option<&'a Path>) -> &'a Path {
    let inside = |w: &Path| match (std::fs::canonicalize(home), std::fs::canonicalize(w)) {
        (Ok(h), Ok(w)) => w.starts_with(h) && w.is_dir(),
        _ => false,
    };
    match workdir {
        Some(w) if inside(w) => w,
        _ => home,
    }
}

#[cfg(test)]
mod start_in_tests {
    use super::start_in;

    #[test]
    fn a_kernel_starts_in_a_folder_of_its_users_never_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("alice");
        std::fs::create_dir_all(home.join("ml101")).unwrap();
        std::fs::create_dir_all(dir.path().join("bob")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("bob"), home.join("out")).unwrap();
        let inside = home.join("ml101");
        assert_eq!(start_in(&home, Some(&inside)), inside);
        assert_eq!(start_in(&home, None), home);
        for elsewhere in [
            home.join("missing"),
            home.join("out"),
            dir.path().join("bob"),
        ] {
            assert_eq!(start_in(&home, Some(&elsewhere)), home, "{elsewhere:?}");
        }
    }
}
