//! Applying a prepared confinement to the calling process: mounts,
//! capabilities, `no_new_privs`, the seccomp filter and the Landlock
//! domain. The gateway builds it (`launch::sandbox`); a forked child
//! applies it before exec, or a pooled kernel at its handover. Only
//! async-signal-safe system calls run in [`Confinement::apply`].

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// A prepared confinement. Serialisable, all but the ruleset, whose
/// descriptor travels beside a [`crate::Handover`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Confinement {
    /// The Landlock ruleset, when the kernel gets a domain.
    #[serde(skip)]
    pub ruleset: Option<OwnedFd>,
    /// Whether a ruleset goes with it (for the receiving end).
    pub landlocked: bool,
    /// The highest capability number, when capabilities must be dropped.
    pub drop_caps_to: Option<u32>,
    /// The seccomp program (denies `socket(AF_UNIX)` and io_uring, and
    /// under a memory limit what the limit does not count).
    pub seccomp: Vec<Instruction>,
    /// A private `/dev/shm` and `/proc`, when the gateway may mount.
    pub mounts: Option<Mounts>,
}

/// One classic BPF instruction, laid out as the kernel's `sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The strings of a private mount namespace's mount calls, made before
/// the fork, and the Landlock rights on the fresh mounts: a rule on the dir
/// they hide would not count (Landlock skips hidden mount points). No right
/// (0) adds no rule: the mount is there, out of the kernel's reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mounts {
    pub shm_access: u64,
    pub proc_access: u64,
    pub root: CString,
    pub shm: Option<CString>,
    pub tmpfs: CString,
    pub shm_options: CString,
    pub proc_dir: CString,
    pub proc_fs: CString,
    pub proc_options: CString,
}

/// The last capability number when this process runs as root (its kernels
/// must not), else `None`.
pub fn drop_caps_to() -> Option<u32> {
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
                        // No right, no rule (Landlock refuses an empty one).
                        let Some(path) = path.filter(|_| access != 0) else {
                            continue;
                        };
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
                // `Instruction` is `repr(C)` with the kernel's layout.
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
}
