//! The trees Landlock grants a kernel: the system's read-only trees (less
//! `/etc`'s secrets and parts of `/sys`), its program and toolchain, the
//! device nodes of its GPUs, each cut around the gateway's data dir and
//! its user's home. Pure path work; no ruleset is built here.

use std::path::{Path, PathBuf};

use super::error::SandboxError;
use super::grants::Grants;

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

/// Device nodes whose memory `RLIMIT_DATA` does not count: files in
/// `/dev/shm` are shared memory, and so is a shared mapping of `/dev/zero`
/// opened for writing. A kernel with a memory limit only reads
/// `/dev/zero` and has no `/dev/shm`.
const SHARED_MEMORY_DEVICES: &[&str] = &["/dev/shm", "/dev/zero"];

/// NVIDIA control nodes a GPU kernel needs beside its `nvidiaN`.
const NVIDIA_CONTROL: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];

/// Files of a cargo home a kernel must not read.
const CARGO_SECRETS: &[&str] = &["credentials", "credentials.toml"];

/// The trees a kernel reads, and the paths outside its user's folder
/// it writes (devices, cargo's cache), each cut around the data dir
/// and the gateway user's home.
pub(super) fn granted(
    grants: &Grants,
    read_paths: &[PathBuf],
    nvidia_dir: &Path,
    protected: &[PathBuf],
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SandboxError> {
    let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read.extend(entries_except(Path::new("/etc"), ETC_SECRETS)?);
    read.extend(entries_except(Path::new("/sys"), SYS_HIDDEN)?);
    read.extend(read_paths.iter().cloned());
    read.extend(grants.toolchain.iter().cloned());
    if let Some(program) = &grants.program {
        read.extend(program_paths(program));
    }
    let mut write: Vec<PathBuf> = DEVICES
        .iter()
        .filter(|d| !(grants.memory_limited && SHARED_MEMORY_DEVICES.contains(d)))
        .map(PathBuf::from)
        .collect();
    if grants.memory_limited {
        // Read only: a shared mapping of it cannot be written, and reading
        // one allocates nothing.
        read.push(PathBuf::from("/dev/zero"));
    }
    write.extend(gpu_nodes(nvidia_dir, &grants.gpus));
    if let Some(cargo) = &grants.cargo_home {
        read.extend(cargo_home_paths(cargo)?);
    }
    let mut readable = Vec::new();
    for path in read.into_iter().filter(|p| p.is_absolute() && p.exists()) {
        readable.extend(exclude(protected, &path)?);
    }
    let mut writable = Vec::new();
    for path in write.into_iter().filter(|p| p.is_absolute() && p.exists()) {
        writable.extend(exclude(protected, &path)?);
    }
    Ok((readable, writable))
}

/// `path` as granted trees that leave out the protected dirs: the
/// path itself when it holds none of them, nothing when it is one of
/// them, else the siblings of the protected dir and of each of its
/// ancestors up to `path` (an entry created there later is out of
/// reach, which is why kernels get their own `TMPDIR`).
pub(super) fn exclude(protected: &[PathBuf], path: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let inner: Vec<&PathBuf> = protected
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
        out.extend(exclude(protected, &entry.path())?);
    }
    Ok(out)
}

/// The device nodes of the admitted GPUs and the control nodes CUDA
/// needs; none for a kernel without GPUs.
fn gpu_nodes(nvidia_dir: &Path, gpus: &[String]) -> Vec<PathBuf> {
    if gpus.is_empty() {
        return Vec::new();
    }
    let mut nodes: Vec<PathBuf> = NVIDIA_CONTROL.iter().map(|n| nvidia_dir.join(n)).collect();
    let minors = gpu_minors();
    for gpu in gpus {
        if let Ok(n) = gpu.parse::<u32>() {
            nodes.push(nvidia_dir.join(format!("nvidia{n}")));
        } else if let Some((_, n)) = minors.iter().find(|(uuid, _)| uuid == gpu) {
            nodes.push(nvidia_dir.join(format!("nvidia{n}")));
        } else if gpu.starts_with("MIG-") {
            // A MIG instance's node is a capability of its parent GPU's;
            // which parent is not known here, so every GPU node is
            // granted (the MIG capability still limits it to its slice
            // on GPUs in MIG mode).
            nodes.push(nvidia_dir.join("nvidia-caps"));
            nodes.extend(
                minors
                    .iter()
                    .map(|(_, n)| nvidia_dir.join(format!("nvidia{n}"))),
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
