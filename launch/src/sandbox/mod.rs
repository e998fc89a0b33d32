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
//!   GPU it was admitted for: `CUDA_VISIBLE_DEVICES` is no longer advice.
//!   A kernel with a memory limit gets no `shm/` and only reads `zero`;
//! - Landlock (scopes): signals, ptrace and abstract Unix sockets stop at
//!   the domain's edge (ptrace since ABI 1, signals and sockets since 6);
//! - Landlock (TCP, ABI 4): a kernel binds only its own five ports and
//!   connects only to the configured outbound ports (HTTP and HTTPS by
//!   default). Kernels' ZeroMQ traffic is signed, not encrypted, so without
//!   this one user's code could read another's iopub on loopback;
//! - seccomp: `socket(AF_UNIX, …)` and `io_uring_setup` fail with `EACCES`.
//!   Landlock does not cover connecting to a pathname Unix socket (a user
//!   systemd or docker socket would run things outside the sandbox);
//!   `socketpair` stays allowed. For a kernel with a memory limit, the
//!   memory `RLIMIT_DATA` does not count fails too (shared anonymous
//!   mappings, memfds, System V segments, stack mappings: see `seccomp`);
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
//! files and allocates); the forked child, or a pooled kernel at its
//! handover (the `handover` crate), only makes the async-signal-safe system
//! calls of [`Confinement::apply`].
//!
//! By job: [`mode`] is `--sandbox`, `abi` what the running Linux offers,
//! `grants` what one kernel may reach, `paths` turns that into the trees
//! Landlock grants, `seccomp` and `mounts` prepare the filter and the
//! private mounts, and [`policy`] builds a kernel's [`Confinement`], which
//! `handover` applies.

mod abi;
mod error;
mod grants;
pub mod mode;
mod mounts;
mod paths;
pub mod policy;
mod seccomp;
#[cfg(test)]
mod tests;

pub use error::SandboxError;
pub use grants::Grants;
pub use handover::Confinement;
pub use mode::SandboxMode;
pub use paths::cargo_home_paths;
pub use policy::{DEFAULT_CONNECT_PORTS, Sandbox};
