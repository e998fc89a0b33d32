//! [`Sandbox`]: what the gateway keeps from its kernels, and how one
//! kernel's [`Confinement`] is built from its [`Grants`] (the Landlock
//! ruleset, the seccomp program, the mounts) before the fork.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use handover::{Confinement, Instruction, Mounts};
use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, path_beneath_rules,
};

use super::abi;
use super::error::SandboxError;
use super::grants::Grants;
use super::mode::SandboxMode;
use super::mounts;
use super::paths;
use super::seccomp;

/// TCP ports a confined kernel may connect to by default: HTTP and HTTPS,
/// which is what `:dep`, `pip` and dataset downloads use.
pub const DEFAULT_CONNECT_PORTS: &[u16] = &[80, 443];

/// What the gateway keeps out of its kernels' reach.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(super) mode: SandboxMode,
    /// The gateway's data dir and its user's home, canonical: no granted
    /// tree reaches into them.
    pub(super) protected: Vec<PathBuf>,
    /// TCP ports kernels may connect to (anywhere); every other port,
    /// other kernels' and the gateway's among them, is closed to them.
    pub(super) connect_ports: Vec<u16>,
    /// Extra trees kernels may read (`--sandbox-read-paths`).
    pub(super) read_paths: Vec<PathBuf>,
    /// Where the NVIDIA device nodes are: `/dev`, or a test's folder of
    /// planted files (`LAB_TEST_DEV_DIR`).
    pub(super) nvidia_dir: PathBuf,
}

impl Sandbox {
    pub fn new(mode: SandboxMode, data_dir: &Path) -> Sandbox {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let mut protected = vec![canonical(data_dir)];
        protected.extend(
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute() && h != Path::new("/"))
                .map(|h| canonical(&h)),
        );
        Sandbox {
            mode,
            protected,
            connect_ports: DEFAULT_CONNECT_PORTS.to_vec(),
            read_paths: Vec::new(),
            nvidia_dir: std::env::var_os("LAB_TEST_DEV_DIR")
                .map_or_else(|| PathBuf::from("/dev"), PathBuf::from),
        }
    }

    /// Sets the TCP ports kernels may connect to.
    pub fn with_connect_ports(mut self, ports: Vec<u16>) -> Sandbox {
        self.connect_ports = ports;
        self
    }

    /// Adds trees every kernel may read (a model cache, a dataset).
    pub fn with_read_paths(mut self, paths: Vec<PathBuf>) -> Sandbox {
        self.read_paths = paths;
        self
    }

    pub fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// Whether the running Linux supports all the confinement we ask for.
    pub fn supported() -> bool {
        abi::supported()
    }

    /// The Landlock ABI this gateway confines kernels with, `None` without
    /// Landlock.
    pub fn abi() -> Option<i32> {
        abi::abi()
    }

    /// The ABI this gateway needs for `require`.
    pub fn abi_wanted() -> i32 {
        abi::abi_wanted()
    }

    /// The running Linux's release (`uname -r`), for messages.
    pub fn linux_release() -> String {
        abi::linux_release()
    }

    /// What a kernel loses under `best-effort` on a Linux with Landlock
    /// `abi` (`None`: no Landlock), one clause each.
    pub fn losses(abi: Option<i32>) -> Vec<&'static str> {
        abi::losses(abi)
    }

    /// Builds a kernel's confinement; `None` when the mode is `off`.
    pub fn prepare(&self, grants: &Grants) -> Result<Option<Confinement>, SandboxError> {
        if self.mode == SandboxMode::Off {
            return Ok(None);
        }
        let found = abi::abi();
        if self.mode == SandboxMode::Require && found.is_none_or(|abi| abi < abi::ABI_WANTED as i32)
        {
            return Err(SandboxError::Unsupported {
                wanted: abi::ABI_WANTED as i32,
                found: found.map_or("no Landlock".into(), |v| format!("ABI {v}")),
                release: abi::linux_release(),
            });
        }
        let ruleset = if found.is_some() {
            self.ruleset(grants)?
        } else {
            tracing::warn!("Landlock is not available: kernels are not confined to their files");
            None
        };
        // The rights the ruleset handles on this Linux: a rule with more
        // is refused.
        let handled = AccessFs::from_all(abi::ABI_WANTED)
            & AccessFs::from_all(ABI::from(abi::probe().unwrap_or(0)));
        // A kernel with a memory limit gets its own `/dev/shm` too, but
        // no right on it: files there are memory the limit does not count.
        let mounts = mounts::private()?.map(|m| Mounts {
            shm_access: if grants.memory_limited {
                0
            } else {
                handled.bits()
            },
            proc_access: (handled & AccessFs::from_read(abi::ABI_WANTED)).bits(),
            ..m
        });
        let seccomp = seccomp::program(grants)?
            .into_iter()
            .map(|i| Instruction {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        Ok(Some(Confinement {
            landlocked: ruleset.is_some(),
            ruleset,
            drop_caps_to: handover::confinement::drop_caps_to(),
            seccomp,
            mounts,
        }))
    }

    fn ruleset(&self, grants: &Grants) -> Result<Option<OwnedFd>, SandboxError> {
        let level = if self.mode == SandboxMode::Require {
            CompatLevel::HardRequirement
        } else {
            CompatLevel::BestEffort
        };
        let all = AccessFs::from_all(abi::ABI_WANTED);
        let read = AccessFs::from_read(abi::ABI_WANTED);
        let ports = |ports: &[u16], access: AccessNet| {
            ports
                .iter()
                .map(move |&p| Ok::<_, landlock::RulesetError>(NetPort::new(p, access)))
                .collect::<Vec<_>>()
        };
        let (readable, writable) = self.paths(grants)?;
        let ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(all)?
            .handle_access(AccessNet::from_all(abi::ABI_WANTED))?
            .scope(Scope::Signal | Scope::AbstractUnixSocket)?
            .create()?
            .add_rules(path_beneath_rules(readable, read))?
            .add_rules(path_beneath_rules(writable, all))?
            .add_rules(path_beneath_rules(&grants.read_write, all))?
            .add_rules(path_beneath_rules(&grants.read, read))?
            .add_rules(ports(&grants.bind_ports, AccessNet::BindTcp))?
            .add_rules(ports(
                if grants.offline {
                    &[]
                } else {
                    &self.connect_ports
                },
                AccessNet::ConnectTcp,
            ))?;
        // Only the ruleset's descriptor goes to the child; it sets
        // no_new_privs itself, in `apply`.
        Ok(Option::<OwnedFd>::from(ruleset))
    }

    /// The trees a kernel reads, and the paths outside its user's folder
    /// it writes (devices, cargo's cache), each cut around the data dir
    /// and the gateway user's home.
    pub fn paths(&self, grants: &Grants) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SandboxError> {
        paths::granted(grants, &self.read_paths, &self.nvidia_dir, &self.protected)
    }

    /// `path` as granted trees that leave out the protected dirs: the path
    /// itself when it holds none of them, nothing when it is one of them,
    /// else the siblings of the protected dir and of each of its ancestors.
    pub fn exclude(&self, path: &Path) -> Result<Vec<PathBuf>, SandboxError> {
        paths::exclude(&self.protected, path)
    }
}
