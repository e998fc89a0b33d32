//! What one kernel may reach beyond the system's read-only trees: its
//! folders, its program and toolchain, its GPUs and ports. Only the data;
//! [`super::paths`] turns it into granted trees.

use std::path::PathBuf;

/// What one kernel may reach, beyond the system's read-only trees.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Read, write, create and delete beneath these.
    pub read_write: Vec<PathBuf>,
    /// Read only: the connection file, and read-only folders shown to the
    /// kernel (`LaunchSpec::read_only`).
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
    /// No network at all (grading kernels): no outbound TCP port, and no
    /// UDP socket. Listening on `bind_ports` still works.
    pub offline: bool,
    /// The launch has a memory limit (grading kernels), which the forked
    /// child sets as `RLIMIT_DATA` (`local::child`): what that limit does
    /// not count is closed too. No shared anonymous memory (`MAP_SHARED`
    /// anonymous mappings, `memfd_create`, System V segments, and no
    /// write access to `/dev/shm` or `/dev/zero`), no stack mappings
    /// (`MAP_GROWSDOWN`, `mremap`); see [`super::seccomp`].
    pub memory_limited: bool,
}
