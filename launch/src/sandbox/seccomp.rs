//! The seccomp filter of a confined kernel, built in the gateway (it
//! allocates) and loaded by the child.

use super::error::SandboxError;

/// A seccomp program that fails `socket(AF_UNIX, …)` (pathname sockets are
/// beyond Landlock) and `io_uring_setup` (io_uring creates sockets without
/// the `socket` system call) with `EACCES`.
pub(super) fn program() -> Result<seccompiler::BpfProgram, SandboxError> {
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
