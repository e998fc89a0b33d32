//! Confinement of local kernels: a kernel runs without the gateway's privileges.
//!
//! A local kernel is a process of the gateway's own Unix user, so without
//! more it could read the gateway's database, the gateway user's home
//! (`~/.ssh`, cloud credentials), every user's notebooks and the other
//! kernels' connection keys, and signal or trace their processes. Before it
//! execs, each kernel is confined by an allow-list, not a deny-list:
//!
//! - Landlock (files): it reads and executes only the system's read-only
//!   trees (`/usr`, `/lib*`, `/bin`, `/opt`, `/etc` less its secrets, parts
//!   of `/sys`, `/proc`), its kernelspec's program and that program's
//!   prefix (a venv and the Python it links to), the toolchain dirs on its
//!   `PATH` and `LD_LIBRARY_PATH`, `RUSTUP_HOME`, and the paths the admin
//!   names (`--sandbox-read-paths`). It writes only its user's folder, its
//!   private temp dir, cargo's shared download cache and a few device
//!   nodes. A granted tree that holds the data dir or the gateway user's
//!   home is cut around them (see [`Sandbox::exclude`]);
//! - Landlock (devices): `/dev` is not granted; only `null`, `zero`,
//!   `full`, `random`, `urandom`, `tty`, `ptmx`, `pts/` and `shm/`, and for
//!   a GPU kernel the NVIDIA control nodes and the `/dev/nvidiaN` of each
//!   GPU it was admitted for: `CUDA_VISIBLE_DEVICES` is no longer advice;
//! - Landlock (scopes): signals, ptrace and abstract Unix sockets stop at
//!   the domain's edge (ptrace since ABI 1, signals and sockets since 6);
//! - Landlock (TCP, ABI 4): a kernel binds only its own five ports and
//!   connects only to the configured outbound ports (HTTP and HTTPS by
//!   default). Kernels' ZeroMQ traffic is signed, not encrypted, so without
//!   this one user's code could read another's iopub on loopback;
//! - seccomp: `socket(AF_UNIX, …)` and `io_uring_setup` fail with `EACCES`.
//!   Landlock does not cover connecting to a pathname Unix socket (a user
//!   systemd or docker socket would run things outside the sandbox);
//!   `socketpair` stays allowed;
//! - a private mount namespace, when the gateway runs as root: the kernel
//!   gets its own empty `/dev/shm` (no reading or filling another kernel's
//!   segments) and its own `/proc` mounted `hidepid=1`, where no file of a
//!   process outside its Landlock domain (the gateway, other kernels) can
//!   be read, not even its command line;
//! - `no_new_privs` is set, and a gateway running as root also drops every
//!   capability, so a kernel never holds root's privileges.
//!
//! What remains: without root the kernel shares the host's `/dev/shm` and
//! `/proc` (other processes' command lines are readable: the gateway puts
//! no secret on one). A kernel writes no file another user's kernel reads:
//! it compiles from its own user's cargo home (`DATA/cargo/USER`), and the
//! shared one is read-only to it.
//!
//! Modes (`--sandbox`): `require` (the default) refuses to start kernels on
//! a Linux without Landlock ABI 6; `best-effort` confines with what the
//! running Linux has; `off` runs kernels as plain processes.
//!
//! Landlock rules attach to the inodes that exist when the kernel starts.
//! The ruleset and the seccomp program are built in the gateway (that opens
//! files and allocates); the forked child only makes the async-signal-safe
//! system calls of [`Confinement::apply`].

use std::ffi::CString;
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
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Confine kernels fully, or refuse to start them (Landlock ABI 6).
    #[default]
    #[serde(alias = "auto", alias = "landlock")]
    Require,
    /// Confine kernels with whatever the running Linux supports, saying
    /// at startup what is lost.
    BestEffort,
    /// Run kernels as plain processes of the gateway's user.
    #[serde(alias = "none")]
    Off,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "require" | "auto" | "landlock" => Ok(SandboxMode::Require),
            "best-effort" | "besteffort" => Ok(SandboxMode::BestEffort),
            "off" | "none" => Ok(SandboxMode::Off),
            other => Err(format!(
                "unknown sandbox mode {other:?} (require, best-effort, off)"
            )),
        }
    }
}

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

impl From<SandboxError> for crate::launcher::LaunchError {
    fn from(e: SandboxError) -> Self {
        crate::launcher::LaunchError::backend("sandbox", e)
    }
}

/// TCP ports a confined kernel may connect to by default: HTTP and HTTPS,
/// which is what `:dep`, `pip` and dataset downloads use.
pub const DEFAULT_CONNECT_PORTS: &[u16] = &[80, 443];

/// The system's read-only trees every kernel may read and execute.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/proc",
    // Where a systemd host's /etc/resolv.conf points.
    "/run/systemd/resolve",
];

/// Entries of `/etc` kept from kernels: password hashes, host keys, sudo
/// rules and other credentials. (A kernel of a root gateway runs as uid 0
/// without capabilities, which still reads root-owned 0600 files.)
const ETC_SECRETS: &[&str] = &[
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "sudoers",
    "sudoers.d",
    "ssh",
    "ssl/private",
    "security",
    "krb5.keytab",
    "NetworkManager",
    "wireguard",
    "ipsec.secrets",
    "ppp",
    "openvpn",
    "docker",
    "letsencrypt",
    "credstore",
    "credstore.encrypted",
    "libvirt",
    "machine-id",
];

/// Entries of `/sys` kept from kernels (firmware tables, kernel debug and
/// tracing); what libraries read (CPUs, PCI devices, cgroups) stays.
const SYS_HIDDEN: &[&str] = &[
    "firmware",
    "kernel/debug",
    "kernel/tracing",
    "kernel/security",
];

/// Device nodes every kernel needs.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// NVIDIA control nodes a GPU kernel needs beside its `nvidiaN`.
const NVIDIA_CONTROL: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];

/// Files of a cargo home a kernel must not read.
const CARGO_SECRETS: &[&str] = &["credentials", "credentials.toml"];

/// What the gateway keeps out of its kernels' reach.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mode: SandboxMode,
    /// The gateway's data dir and its user's home, canonical: no granted
    /// tree reaches into them.
    protected: Vec<PathBuf>,
    /// TCP ports kernels may connect to (anywhere); every other port,
    /// other kernels' and the gateway's among them, is closed to them.
    connect_ports: Vec<u16>,
    /// Extra trees kernels may read (`--sandbox-read-paths`).
    read_paths: Vec<PathBuf>,
    /// Where the NVIDIA device nodes are: `/dev`, or a test's folder of
    /// planted files (`LAB_TEST_DEV_DIR`).
    nvidia_dir: PathBuf,
}

/// What one kernel may reach, beyond the system's read-only trees.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Read, write, create and delete beneath these.
    pub read_write: Vec<PathBuf>,
    /// Read only (the connection file).
    pub read: Vec<PathBuf>,
    /// The kernelspec's program, as found on `PATH`: it and its prefix
    /// (the `bin` dir's parent), before and after resolving symlinks.
    pub program: Option<PathBuf>,
    /// Toolchain dirs to read and execute: the kernel's `PATH` and
    /// `LD_LIBRARY_PATH` entries, `RUSTUP_HOME`.
    pub toolchain: Vec<PathBuf>,
    /// The shared cargo home: its binaries, config and downloaded sources
    /// are read, nothing written; its credentials stay out of reach.
    pub cargo_home: Option<PathBuf>,
    /// The admitted GPUs (`CUDA_VISIBLE_DEVICES` tokens).
    pub gpus: Vec<String>,
    /// TCP ports the kernel may listen on: the five of its connection file.
    pub bind_ports: Vec<u16>,
}

/// A prepared confinement, applied in the forked child.
#[derive(Debug)]
pub struct Confinement {
    ruleset: Option<OwnedFd>,
    /// The highest capability number, when capabilities must be dropped.
    drop_caps_to: Option<u32>,
    /// The seccomp program (denies `socket(AF_UNIX)` and io_uring).
    seccomp: seccompiler::BpfProgram,
    /// A private `/dev/shm` and `/proc`, when the gateway may mount.
    mounts: Option<Mounts>,
}

/// The strings of the child's mount calls, made before the fork, and the
/// Landlock rights on the fresh mounts: a rule on the dir they hide would
/// not count (Landlock skips hidden mount points).
#[derive(Debug)]
struct Mounts {
    shm_access: u64,
    proc_access: u64,
    root: CString,
    shm: Option<CString>,
    tmpfs: CString,
    shm_options: CString,
    proc_dir: CString,
    proc_fs: CString,
    proc_options: CString,
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
        matches!(Self::abi(), Some(abi) if abi >= ABI_WANTED as i32)
    }

    /// The Landlock ABI this gateway confines kernels with, `None` without
    /// Landlock. `LAB_TEST_LANDLOCK_ABI` lowers it, so that tests see what
    /// an older Linux gets.
    pub fn abi() -> Option<i32> {
        let real = probe();
        match std::env::var("LAB_TEST_LANDLOCK_ABI")
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
        {
            Some(forced) if forced <= 0 => None,
            Some(forced) => real.map(|r| r.min(forced)),
            None => real,
        }
    }

    /// The ABI this gateway needs for `require`.
    pub fn abi_wanted() -> i32 {
        ABI_WANTED as i32
    }

    /// The running Linux's release (`uname -r`), for messages.
    pub fn linux_release() -> String {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into())
    }

    /// What a kernel loses under `best-effort` on a Linux with Landlock
    /// `abi` (`None`: no Landlock), one clause each; empty when nothing is.
    pub fn losses(abi: Option<i32>) -> Vec<&'static str> {
        let Some(abi) = abi else {
            return vec![
                "kernels are NOT confined: they read every file the gateway can (the data dir, other users' notebooks, the gateway user's home), signal and trace the gateway, and use its ports",
            ];
        };
        let mut lost = Vec::new();
        if abi < 6 {
            lost.push(
                "kernels can signal or stop the gateway and each other, and reach abstract Unix sockets (Landlock ABI 6)",
            );
        }
        if abi < 5 {
            lost.push("ioctl on the device nodes they may open is not checked (ABI 5)");
        }
        if abi < 4 {
            lost.push(
                "kernels can connect to other kernels' and the gateway's ports and squat the ports of the next kernel (ABI 4)",
            );
        }
        if abi < 3 {
            lost.push("kernels can truncate files they may only read (ABI 3)");
        }
        if abi < 2 {
            lost.push("kernels cannot rename or link files between folders (ABI 2)");
        }
        lost
    }

    /// Builds a kernel's confinement; `None` when the mode is `off`.
    pub fn prepare(&self, grants: &Grants) -> Result<Option<Confinement>, SandboxError> {
        if self.mode == SandboxMode::Off {
            return Ok(None);
        }
        let found = Self::abi();
        if self.mode == SandboxMode::Require && found.is_none_or(|abi| abi < ABI_WANTED as i32) {
            return Err(SandboxError::Unsupported {
                wanted: ABI_WANTED as i32,
                found: found.map_or("no Landlock".into(), |v| format!("ABI {v}")),
                release: Self::linux_release(),
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
        let handled =
            AccessFs::from_all(ABI_WANTED) & AccessFs::from_all(ABI::from(probe().unwrap_or(0)));
        let mounts = Mounts::new()?.map(|m| Mounts {
            shm_access: handled.bits(),
            proc_access: (handled & AccessFs::from_read(ABI_WANTED)).bits(),
            ..m
        });
        Ok(Some(Confinement {
            ruleset,
            drop_caps_to: drop_caps_to(),
            seccomp: seccomp_program()?,
            mounts,
        }))
    }

    fn ruleset(&self, grants: &Grants) -> Result<Option<OwnedFd>, SandboxError> {
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
        let (readable, writable) = self.paths(grants)?;
        let ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(all)?
            .handle_access(AccessNet::from_all(ABI_WANTED))?
            .scope(Scope::Signal | Scope::AbstractUnixSocket)?
            .create()?
            .add_rules(path_beneath_rules(readable, read))?
            .add_rules(path_beneath_rules(writable, all))?
            .add_rules(path_beneath_rules(&grants.read_write, all))?
            .add_rules(path_beneath_rules(&grants.read, read))?
            .add_rules(ports(&grants.bind_ports, AccessNet::BindTcp))?
            .add_rules(ports(&self.connect_ports, AccessNet::ConnectTcp))?;
        // Only the ruleset's descriptor goes to the child; it sets
        // no_new_privs itself, in `apply`.
        Ok(Option::<OwnedFd>::from(ruleset))
    }

    /// The trees a kernel reads, and the paths outside its user's folder
    /// it writes (devices, cargo's cache), each cut around the data dir
    /// and the gateway user's home.
    pub fn paths(&self, grants: &Grants) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SandboxError> {
        let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
        read.extend(entries_except(Path::new("/etc"), ETC_SECRETS)?);
        read.extend(entries_except(Path::new("/sys"), SYS_HIDDEN)?);
        read.extend(self.read_paths.iter().cloned());
        read.extend(grants.toolchain.iter().cloned());
        if let Some(program) = &grants.program {
            read.extend(program_paths(program));
        }
        let mut write: Vec<PathBuf> = DEVICES.iter().map(PathBuf::from).collect();
        write.extend(self.gpu_nodes(&grants.gpus));
        if let Some(cargo) = &grants.cargo_home {
            read.extend(cargo_home_paths(cargo)?);
        }
        let mut readable = Vec::new();
        for path in read.into_iter().filter(|p| p.is_absolute() && p.exists()) {
            readable.extend(self.exclude(&path)?);
        }
        let mut writable = Vec::new();
        for path in write.into_iter().filter(|p| p.is_absolute() && p.exists()) {
            writable.extend(self.exclude(&path)?);
        }
        Ok((readable, writable))
    }

    /// `path` as granted trees that leave out the protected dirs: the
    /// path itself when it holds none of them, nothing when it is one of
    /// them, else the siblings of the protected dir and of each of its
    /// ancestors up to `path` (an entry created there later is out of
    /// reach, which is why kernels get their own `TMPDIR`).
    pub fn exclude(&self, path: &Path) -> Result<Vec<PathBuf>, SandboxError> {
        let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let inner: Vec<&PathBuf> = self
            .protected
            .iter()
            .filter(|p| p.starts_with(&resolved))
            .collect();
        if inner.is_empty() {
            return Ok(vec![path.to_path_buf()]);
        }
        if inner.iter().any(|p| **p == resolved) {
            return Ok(Vec::new());
        }
        let entries = std::fs::read_dir(&resolved).map_err(|source| SandboxError::List {
            path: resolved.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            // A rule follows a symlink to its target, and a link such as
            // pytest's `pytest-current` may point at a protected dir's
            // ancestor. A target that a kernel needs has a rule of its own.
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            out.extend(self.exclude(&entry.path())?);
        }
        Ok(out)
    }

    /// The device nodes of the admitted GPUs and the control nodes CUDA
    /// needs; none for a kernel without GPUs.
    fn gpu_nodes(&self, gpus: &[String]) -> Vec<PathBuf> {
        if gpus.is_empty() {
            return Vec::new();
        }
        let mut nodes: Vec<PathBuf> = NVIDIA_CONTROL
            .iter()
            .map(|n| self.nvidia_dir.join(n))
            .collect();
        let minors = gpu_minors();
        for gpu in gpus {
            if let Ok(n) = gpu.parse::<u32>() {
                nodes.push(self.nvidia_dir.join(format!("nvidia{n}")));
            } else if let Some((_, n)) = minors.iter().find(|(uuid, _)| uuid == gpu) {
                nodes.push(self.nvidia_dir.join(format!("nvidia{n}")));
            } else if gpu.starts_with("MIG-") {
                // A MIG instance's node is a capability of its parent GPU's;
                // which parent is not known here, so every GPU node is
                // granted (the MIG capability still limits it to its slice
                // on GPUs in MIG mode).
                nodes.push(self.nvidia_dir.join("nvidia-caps"));
                nodes.extend(
                    minors
                        .iter()
                        .map(|(_, n)| self.nvidia_dir.join(format!("nvidia{n}"))),
                );
            } else {
                tracing::warn!(
                    gpu,
                    "no device node found for this GPU: the kernel cannot open it"
                );
            }
        }
        nodes
    }
}

/// The entries of `dir` but `except` (names, or `sub/name` to descend).
fn entries_except(dir: &Path, except: &[&str]) -> Result<Vec<PathBuf>, SandboxError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if except.contains(&name.as_ref()) {
            continue;
        }
        let prefix = format!("{name}/");
        let nested: Vec<&str> = except
            .iter()
            .filter_map(|e| e.strip_prefix(&prefix))
            .collect();
        if nested.is_empty() {
            out.push(entry.path());
        } else {
            out.extend(entries_except(&entry.path(), &nested)?);
        }
    }
    Ok(out)
}

/// A kernel's program and its prefix (`…/bin/python` → `…`), as named and
/// with symlinks resolved (a venv's python is a link to pyenv's).
fn program_paths(program: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        out.push(p.to_path_buf());
        // `/bin/sh`'s prefix would be `/`: the system trees cover it.
        if let Some(bin) = p
            .parent()
            .filter(|b| b.file_name().is_some_and(|n| n == "bin"))
        {
            out.extend(
                bin.parent()
                    .filter(|p| p.parent().is_some())
                    .map(Path::to_path_buf),
            );
        }
    };
    add(program);
    if let Ok(real) = program.canonicalize() {
        add(&real);
    }
    out
}

/// What of the shared cargo home a kernel reads (binaries, config, the
/// downloaded sources): everything but its credentials, and nothing it
/// writes. A kernel compiles from a cargo home of its user's own (the
/// launcher's `CARGO_HOME`): a shared one, writable, would let one user
/// edit a crate's source that another user's `:dep` then compiles.
pub fn cargo_home_paths(cargo: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    entries_except(cargo, CARGO_SECRETS)
}

/// The minor device numbers of the NVIDIA GPUs, by UUID, from the driver's
/// `/proc/driver/nvidia/gpus/*/information`.
fn gpu_minors() -> Vec<(String, u32)> {
    let Ok(dirs) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("information")).ok())
        .filter_map(|info| {
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start_matches(':').trim().to_owned())
            };
            Some((field("GPU UUID")?, field("Device Minor")?.parse().ok()?))
        })
        .collect()
}

/// A seccomp program that fails `socket(AF_UNIX, …)` (pathname sockets are
/// beyond Landlock) and `io_uring_setup` (io_uring creates sockets without
/// the `socket` system call) with `EACCES`.
fn seccomp_program() -> Result<seccompiler::BpfProgram, SandboxError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let unix = SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_UNIX as u64,
    )?])?;
    let filter = SeccompFilter::new(
        [
            (libc::SYS_socket, vec![unix]),
            (libc::SYS_io_uring_setup, vec![]),
        ]
        .into_iter()
        .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        std::env::consts::ARCH.try_into()?,
    )?;
    Ok(filter.try_into()?)
}

impl Mounts {
    /// The private mounts, when this gateway may make them (root with
    /// `CAP_SYS_ADMIN`); `None` otherwise.
    fn new() -> Result<Option<Mounts>, SandboxError> {
        if !may_mount() {
            return Ok(None);
        }
        Ok(Some(Mounts {
            shm_access: 0,
            proc_access: 0,
            root: CString::new("/")?,
            shm: Path::new("/dev/shm")
                .is_dir()
                .then(|| CString::new("/dev/shm"))
                .transpose()?,
            tmpfs: CString::new("tmpfs")?,
            shm_options: CString::new("mode=1777,size=50%")?,
            proc_dir: CString::new("/proc")?,
            proc_fs: CString::new("proc")?,
            // `gid` names a group no kernel is in: the default, root's group,
            // would exempt a root gateway's kernels.
            proc_options: CString::new("hidepid=1,gid=2147483646")?,
        }))
    }
}

/// Whether this process is root with `CAP_SYS_ADMIN` (it may make a mount
/// namespace for each kernel).
fn may_mount() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        // CAP_SYS_ADMIN is capability 21.
        .is_some_and(|caps| caps & (1 << 21) != 0)
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

/// `struct landlock_path_beneath_attr` (packed, as in the kernel's header).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

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
        // arguments (C strings and the filter made before the fork); none
        // allocates or takes a lock.
        unsafe {
            // Mounts first: a Landlock domain may not mount.
            if let Some(m) = &self.mounts {
                check(libc::unshare(libc::CLONE_NEWNS) as libc::c_long)?;
                check(libc::mount(
                    std::ptr::null(),
                    m.root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) as libc::c_long)?;
                if let Some(shm) = &m.shm {
                    check(libc::mount(
                        m.tmpfs.as_ptr(),
                        shm.as_ptr(),
                        m.tmpfs.as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        m.shm_options.as_ptr().cast(),
                    ) as libc::c_long)?;
                }
                check(libc::mount(
                    m.proc_fs.as_ptr(),
                    m.proc_dir.as_ptr(),
                    m.proc_fs.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    m.proc_options.as_ptr().cast(),
                ) as libc::c_long)?;
            }
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
                if let Some(m) = &self.mounts {
                    let fresh = [
                        (m.shm.as_ref(), m.shm_access),
                        (Some(&m.proc_dir), m.proc_access),
                    ];
                    for (path, access) in fresh {
                        let Some(path) = path else { continue };
                        let dir = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                        check(dir as libc::c_long)?;
                        let rule = PathBeneathAttr {
                            allowed_access: access,
                            parent_fd: dir,
                        };
                        let added = libc::syscall(
                            libc::SYS_landlock_add_rule,
                            fd.as_raw_fd(),
                            LANDLOCK_RULE_PATH_BENEATH,
                            &rule as *const PathBeneathAttr,
                            0u32,
                        );
                        libc::close(dir);
                        check(added)?;
                    }
                }
                check(libc::syscall(
                    libc::SYS_landlock_restrict_self,
                    fd.as_raw_fd(),
                    0u32,
                ))?;
            }
            if !self.seccomp.is_empty() {
                // seccompiler's `sock_filter` is `repr(C)` with the kernel's layout.
                let program = libc::sock_fprog {
                    len: self.seccomp.len() as u16,
                    filter: self.seccomp.as_ptr().cast::<libc::sock_filter>().cast_mut(),
                };
                check(libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0u32,
                    &program as *const libc::sock_fprog,
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

    /// Whether the kernel gets its own `/dev/shm` and `/proc`.
    pub fn has_private_mounts(&self) -> bool {
        self.mounts.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox_in(dir: &Path) -> Sandbox {
        let mut s = Sandbox::new(SandboxMode::Require, &dir.join("data"));
        s.protected.push(dir.join("home"));
        s
    }

    #[test]
    fn modes_parse_and_the_default_requires_the_sandbox() {
        assert_eq!(SandboxMode::default(), SandboxMode::Require);
        assert_eq!("auto".parse(), Ok(SandboxMode::Require));
        assert_eq!("best-effort".parse(), Ok(SandboxMode::BestEffort));
        assert_eq!("off".parse(), Ok(SandboxMode::Off));
        assert!(
            "loose"
                .parse::<SandboxMode>()
                .unwrap_err()
                .contains("best-effort")
        );
    }

    #[test]
    fn a_granted_tree_is_cut_around_the_data_dir_and_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        for p in ["data/users", "home/.ssh", "opt/tool", "other"] {
            std::fs::create_dir_all(dir.join(p)).unwrap();
        }
        let sandbox = sandbox_in(&dir);
        let mut got = sandbox.exclude(&dir).unwrap();
        got.sort();
        assert_eq!(got, vec![dir.join("opt"), dir.join("other")]);
        assert!(sandbox.exclude(&dir.join("home")).unwrap().is_empty());
        assert_eq!(
            sandbox.exclude(&dir.join("opt")).unwrap(),
            vec![dir.join("opt")]
        );
    }

    #[test]
    fn cargo_credentials_are_never_granted() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["credentials.toml", "config.toml", "env"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        for d in ["bin", "registry"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let read = cargo_home_paths(dir.path()).unwrap();
        let names = |v: &[PathBuf]| {
            let mut n: Vec<String> = v
                .iter()
                .filter(|p| p.exists())
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&read), ["bin", "config.toml", "env", "registry"]);
    }

    #[test]
    fn etc_secrets_and_other_gpus_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let (readable, writable) = sandbox_in(dir.path())
            .paths(&Grants {
                gpus: vec!["0".into()],
                ..Grants::default()
            })
            .unwrap();
        for secret in [
            "/etc/shadow",
            "/etc/ssh",
            "/etc/ssl/private",
            "/sys/firmware",
        ] {
            assert!(!readable.contains(&PathBuf::from(secret)), "{secret}");
        }
        assert!(readable.contains(&PathBuf::from("/usr")));
        assert!(!writable.contains(&PathBuf::from("/dev")));
        assert!(writable.contains(&PathBuf::from("/dev/null")));
        // No GPU node exists here (or only real ones): nvidia1 is never granted.
        assert!(!writable.iter().any(|p| p.ends_with("nvidia1")));
    }

    #[test]
    fn the_seccomp_program_builds_for_this_architecture() {
        assert!(seccomp_program().unwrap().len() > 4);
    }

    #[test]
    fn losses_name_what_an_older_landlock_lacks() {
        assert!(Sandbox::losses(Some(6)).is_empty());
        let three = Sandbox::losses(Some(3)).join("; ");
        assert!(
            three.contains("signal") && three.contains("ports"),
            "{three}"
        );
        assert!(Sandbox::losses(None)[0].contains("NOT confined"));
    }
}
