//! What every local kernel gets in the forked child, before exec and before
//! its sandbox: it becomes a child subreaper (so its whole tree stays its
//! descendants, see [`super::tree`]), and its memory limit, when the launch
//! has one. Only system calls run here.
//!
//! # The memory limit: `RLIMIT_DATA`
//!
//! A launch's `memory_limit` is set as `RLIMIT_DATA` (soft and hard, so the
//! kernel cannot raise it), which every process the kernel starts inherits.
//! Since Linux 4.7 it bounds what a process *allocates*: `brk` and every
//! private writable mapping (malloc's heap and its large blocks, thread
//! stacks, Python objects, NumPy arrays, Rust `Vec`s, CPU tensors). Past
//! it, `mmap`/`brk` fail with `ENOMEM`, so malloc returns NULL and the cell
//! gets the language's own failure: Python's `MemoryError` (or `OSError`
//! `ENOMEM` from an explicit `mmap`), an aborted evcxr child for
//! academy-rust (the cell fails, the kernel restarts its child). Rust
//! aborts a process whose allocation fails, so an academy-candle kernel
//! (one process) dies, and its grading's remaining cells fail.
//!
//! Not `RLIMIT_AS`, which bounds *address space*: it counts what is only
//! reserved (each glibc arena reserves 64 MiB per thread, so a kernel with
//! a tokio or rayon pool on a many-core node runs out of address space long
//! before memory) and shared mappings (libraries, the GPU driver's), and
//! CUDA, which reserves far more address space than the machine has memory,
//! fails to initialise under any useful `RLIMIT_AS`. `RLIMIT_DATA` means the
//! same number of bytes on a laptop and on a 64-core node; cargo and rustc,
//! which evcxr runs for each cell, compile under 2 GiB of it (tested). A GPU
//! kernel under a limit is not tested yet: what CUDA only reserves does not
//! count, what it allocates in host memory does.
//!
//! What it does not count: shared memory (`MAP_SHARED` anonymous
//! mappings, memfds, System V segments, files in `/dev/shm`) and stack
//! mappings (the stack, `MAP_GROWSDOWN`, a stack page grown by `mremap`).
//! A confined kernel with a limit can make neither: its sandbox's seccomp
//! filter and Landlock rules close them (`crate::sandbox`'s `seccomp`),
//! and here its `RLIMIT_STACK` is capped at the limit too (hard; the soft
//! one stays the gateway's, 8 MiB unless said otherwise, as glibc sizes
//! thread stacks by it). An unconfined kernel (`--sandbox off`, which
//! reads and writes whatever the gateway can anyway) has only the rlimits.
//!
//! What no rlimit bounds is the tree as a whole: limits are per process,
//! so a kernel that forks N processes may hold N times the limit. Only a
//! memory cgroup bounds a tree's sum (a pod has one).

use handover::limits::{Limit, Limits};

/// The soft stack limit of a kernel whose gateway has none: glibc's usual
/// 8 MiB (it sizes every thread's stack by the soft limit).
const DEFAULT_STACK: libc::rlim_t = 8 << 20;

/// This process's `resource` limit (unlimited where it cannot be read).
fn current(resource: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut current = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        current.rlim_cur = libc::RLIM_INFINITY;
        current.rlim_max = libc::RLIM_INFINITY;
    }
    current
}

/// The limits of a kernel whose processes may each allocate at most
/// `memory_limit` bytes (never above the gateway's own hard limit, which
/// the kernel could not raise). Set by the forked child, or by a pooled
/// kernel at its handover.
pub(super) fn limits(memory_limit: Option<u64>) -> Limits {
    let data = memory_limit.map(|bytes| {
        let limit = (bytes as libc::rlim_t).min(current(libc::RLIMIT_DATA).rlim_max);
        Limit {
            soft: limit,
            hard: limit,
        }
    });
    let stack = memory_limit.map(|bytes| {
        let now = current(libc::RLIMIT_STACK);
        let hard = (bytes as libc::rlim_t).min(now.rlim_max);
        let soft = if now.rlim_cur == libc::RLIM_INFINITY {
            DEFAULT_STACK
        } else {
            now.rlim_cur
        };
        Limit {
            soft: soft.min(hard),
            hard,
        }
    });
    Limits { data, stack }
}

/// Makes the calling process a child subreaper (kept across execve; not
/// inherited by the kernel's children). Runs in the forked child: no
/// allocation, no locks.
pub(super) fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: a plain system call with valid arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
