//! The seccomp filter of a confined kernel, built in the gateway (it
//! allocates) and loaded by the child.

use super::error::SandboxError;

/// A seccomp program that fails `socket(AF_UNIX, …)` (pathname sockets are
/// beyond Landlock) and `io_uring_setup` (io_uring creates sockets without
/// the `socket` system call) with `EACCES`; `offline`, also IPv4 and IPv6
/// sockets that are not TCP streams (UDP, raw: Landlock rules TCP only).
pub(super) fn program(offline: bool) -> Result<seccompiler::BpfProgram, SandboxError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let unix = SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_UNIX as u64,
    )?])?;
    let mut socket_rules = vec![unix];
    if offline {
        // IPv4 and IPv6 sockets of any type but a stream (the type's low
        // bits; the high ones are SOCK_NONBLOCK and SOCK_CLOEXEC). Netlink
        // stays: glibc's getaddrinfo asks the kernel's routing that way
        // (ZeroMQ binding a kernel's ports does), and it reaches no host.
        for family in [libc::AF_INET, libc::AF_INET6] {
            for kind in [libc::SOCK_DGRAM, libc::SOCK_RAW] {
                socket_rules.push(SeccompRule::new(vec![
                    SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Eq,
                        family as u64,
                    )?,
                    SeccompCondition::new(
                        1,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::MaskedEq(0xf),
                        kind as u64,
                    )?,
                ])?);
            }
        }
    }
    let filter = SeccompFilter::new(
        [
            (libc::SYS_socket, socket_rules),
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
