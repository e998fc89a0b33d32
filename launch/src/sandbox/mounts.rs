//! A confined kernel's private mount namespace, when the gateway runs as
//! root: its own empty `/dev/shm` and a `hidepid` `/proc`. The strings of
//! the mount calls are made here, before the fork.

use std::ffi::CString;
use std::path::Path;

use handover::Mounts;

use super::error::SandboxError;

/// The private mounts, when this gateway may make them (root with
/// `CAP_SYS_ADMIN`), with no Landlock right on them yet; `None` otherwise.
pub(super) fn private() -> Result<Option<Mounts>, SandboxError> {
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
