//! Confinement of local kernels: a kernel runs without the gateway's privileges.
//!
//! A local kernel is a process of the gateway's own Unix user, so without
//! more it could read the gateway's database, every user's notebooks and
//! the other kernels' connection keys, and signal or trace their processes.
//! Before it execs, each kernel is put in its own Landlock domain:
//!
//! - the gateway's data dir is out of reach, but for the kernel's own
//!   notebook root, its private temp dir and its connection file;
//! - the rest of the file system is readable and executable, and writable
//!   only where a kernel must write (`/dev`, the shared cargo home);
//! - signals, ptrace and abstract Unix sockets stop at the domain's edge,
//!   so a kernel cannot reach the gateway or another kernel (Landlock
//!   scopes ptrace since ABI 1, signals and sockets since ABI 6);
//! - TCP too (Landlock ABI 4): a kernel binds only its own five ports and
//!   connects only to the configured outbound ports (HTTP and HTTPS by
//!   default, for crates.io and PyPI). Kernels' ZeroMQ traffic is signed,
//!   not encrypted, so without this one user's code could subscribe to
//!   another user's iopub port on loopback and read their output, or bind
//!   a port the gateway is about to hand to another kernel;
//! - `no_new_privs` is set, and a gateway running as root also drops every
//!   capability, so a kernel never holds root's privileges.
//!
//! Landlock rules attach to the inodes that exist when the kernel starts.
//! The data dir is excluded by granting each of its ancestors' *other*
//! entries, so an entry created later beside one of those ancestors is out
//! of the kernel's reach; kernels get their own `TMPDIR` for that reason.
//!
//! The ruleset is built in the gateway (it opens files and allocates); the
//! forked child only makes the async-signal-safe system calls of
//! [`Confinement::apply`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, path_beneath_rules,
};

/// The newest Landlock ABI whose rights we ask for.
const ABI_WANTED: ABI = ABI::V6;

/// How strictly kernels are confined (`--sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Confine kernels where the running Linux supports Landlock; warn and
    /// run them unconfined where it does not.
    #[default]
    Auto,
    /// Refuse to start a kernel that cannot be fully confined.
    Require,
    /// Run kernels as plain processes of the gateway's user.
    Off,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(SandboxMode::Auto),
            "require" | "landlock" => Ok(SandboxMode::Require),
            "off" | "none" => Ok(SandboxMode::Off),
            other => Err(format!(
                "unknown sandbox mode {other:?} (auto, require, off)"
            )),
        }
    }
}

/// Why a kernel could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot build the kernel's Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("cannot list {path} to exclude the gateway's data from the kernel: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the sandbox is required, but this Linux does not fully support Landlock ABI {wanted} (it has {found}); start with --sandbox auto or off"
    )]
    Unsupported { wanted: i32, found: String },
}

/// TCP ports a confined kernel may connect to by default: HTTP and HTTPS,
/// which is what `:dep`, `pip` and dataset downloads use.
pub const DEFAULT_CONNECT_PORTS: &[u16] = &[80, 443];

/// What the gateway keeps out of its kernels' reach.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mode: SandboxMode,
    /// The gateway's data dir, canonical.
    protected: PathBuf,
    /// TCP ports kernels may connect to (anywhere); every other port,
    /// other kernels' and the gateway's among them, is closed to them.
    connect_ports: Vec<u16>,
}

/// What one kernel may reach, beyond everything outside the data dir.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Read, write, create and delete beneath these.
    pub read_write: Vec<PathBuf>,
    /// Read only (the connection file).
    pub read: Vec<PathBuf>,
    /// TCP ports the kernel may listen on: the five of its connection file.
    pub bind_ports: Vec<u16>,
}

/// A prepared confinement, applied in the forked child.
#[derive(Debug)]
pub struct Confinement {
    ruleset: Option<OwnedFd>,
    /// The highest capability number, when capabilities must be dropped.
    drop_caps_to: Option<u32>,
}

impl Sandbox {
    pub fn new(mode: SandboxMode, data_dir: &Path) -> Sandbox {
        let protected = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        Sandbox {
            mode,
            protected,
            connect_ports: DEFAULT_CONNECT_PORTS.to_vec(),
        }
    }

    /// Sets the TCP ports kernels may connect to.
    pub fn with_connect_ports(mut self, ports: Vec<u16>) -> Sandbox {
        self.connect_ports = ports;
        self
    }

    pub fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// Whether the running Linux supports all the confinement we ask for.
    pub fn supported() -> bool {
        matches!(probe(), Some(abi) if abi >= ABI_WANTED as i32)
    }

    /// The running Linux's Landlock ABI, `None` without Landlock.
    pub fn abi() -> Option<i32> {
        probe()
    }

    /// Builds a kernel's ruleset; `None` when the mode is `off`, or `auto`
    /// on a Linux without Landlock.
    pub fn prepare(&self, grants: &Grants) -> Result<Option<Confinement>, SandboxError> {
        if self.mode == SandboxMode::Off {
            return Ok(None);
        }
        let found = probe();
        if found.is_none_or(|abi| abi < ABI_WANTED as i32) {
            if self.mode == SandboxMode::Require {
                return Err(SandboxError::Unsupported {
                    wanted: ABI_WANTED as i32,
                    found: found.map_or("no Landlock".into(), |v| format!("ABI {v}")),
                });
            }
            if found.is_none() {
                tracing::warn!("Landlock is not available: kernels run unconfined");
                return Ok(Some(Confinement {
                    ruleset: None,
                    drop_caps_to: drop_caps_to(),
                }));
            }
        }
        let level = if self.mode == SandboxMode::Require {
            CompatLevel::HardRequirement
        } else {
            CompatLevel::BestEffort
        };
        let all = AccessFs::from_all(ABI_WANTED);
        let read = AccessFs::from_read(ABI_WANTED);
        let ports = |ports: &[u16], access: AccessNet| {
            ports
                .iter()
                .map(move |&p| Ok::<_, landlock::RulesetError>(NetPort::new(p, access)))
                .collect::<Vec<_>>()
        };
        let ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(all)?
            .handle_access(AccessNet::from_all(ABI_WANTED))?
            .scope(Scope::Signal | Scope::AbstractUnixSocket)?
            .create()?
            .add_rules(path_beneath_rules(self.outside()?, read))?
            .add_rules(path_beneath_rules(writable_outside(), all))?
            .add_rules(path_beneath_rules(&grants.read_write, all))?
            .add_rules(path_beneath_rules(&grants.read, read))?
            .add_rules(ports(&grants.bind_ports, AccessNet::BindTcp))?
            .add_rules(ports(&self.connect_ports, AccessNet::ConnectTcp))?;
        // Only the ruleset's descriptor goes to the child; it sets
        // no_new_privs itself, in `apply`.
        Ok(Some(Confinement {
            ruleset: Option::<OwnedFd>::from(ruleset),
            drop_caps_to: drop_caps_to(),
        }))
    }

    /// Every path outside the data dir, as the fewest hierarchies: the
    /// siblings of the data dir and of each of its ancestors.
    fn outside(&self) -> Result<Vec<PathBuf>, SandboxError> {
        let mut out = Vec::new();
        let mut child = self.protected.as_path();
        while let Some(parent) = child.parent() {
            let entries = std::fs::read_dir(parent).map_err(|source| SandboxError::List {
                path: parent.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                // A rule follows a symlink to its target, and a link such as
                // pytest's `pytest-current` may point at an ancestor of the
                // data dir. Its target, if outside, has a rule of its own.
                let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
                if path != child && !is_link {
                    out.push(path);
                }
            }
            child = parent;
        }
        Ok(out)
    }
}

/// Outside the data dir, where every kernel needs to write: devices
/// (`/dev/null`, terminals, `/dev/shm`) and cargo's shared download cache.
fn writable_outside() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/dev")];
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    paths.extend(cargo_home.map(|c| c.join("registry")));
    paths.into_iter().filter(|p| p.exists()).collect()
}

/// The Landlock ABI of the running Linux, `None` without Landlock.
fn probe() -> Option<i32> {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a null attribute only
    // returns the ABI version; it touches no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (v > 0).then_some(v as i32)
}

/// The last capability number when the gateway runs as root (its kernels
/// must not), else `None`.
fn drop_caps_to() -> Option<u32> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    Some(
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63),
    )
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl Confinement {
    /// Confines the calling process. Runs in the forked child before exec,
    /// so it only makes system calls: no allocation, no locks.
    pub fn apply(&self) -> std::io::Result<()> {
        let check = |r: libc::c_long| {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: each call below is a plain system call with valid
        // arguments; none allocates or takes a lock.
        unsafe {
            if let Some(last) = self.drop_caps_to {
                for cap in 0..=last {
                    // EINVAL for numbers this Linux lacks is harmless.
                    libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                }
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long)?;
            if let Some(fd) = &self.ruleset {
                check(libc::syscall(
                    libc::SYS_landlock_restrict_self,
                    fd.as_raw_fd(),
                    0u32,
                ))?;
            }
            if self.drop_caps_to.is_some() {
                let mut header = CapHeader {
                    version: LINUX_CAPABILITY_VERSION_3,
                    pid: 0,
                };
                let data = [CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                }; 2];
                check(libc::syscall(
                    libc::SYS_capset,
                    &mut header as *mut CapHeader,
                    data.as_ptr(),
                ))?;
            }
        }
        Ok(())
    }

    /// Whether Landlock confines the kernel (not only `no_new_privs`).
    pub fn is_landlocked(&self) -> bool {
        self.ruleset.is_some()
    }
}
