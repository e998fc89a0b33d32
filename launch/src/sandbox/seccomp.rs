//! The seccomp filter of a confined kernel, built in the gateway (it
//! allocates) and loaded by the child.

use super::error::SandboxError;

/// A seccomp program that fails `socket(AF_UNIX, …)` (pathname sockets are
/// beyond Landlock) and `io_uring_setup` (io_uring creates sockets without
/// the `socket` system call) with `EACCES`; `offline`, every socket but a
/// TCP stream over IPv4 or IPv6 and netlink (Landlock rules TCP only: UDP,
/// raw, SCTP, vsock and the rest would be ways out).
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
        // An allow-list, written as the denials it implies: no family but
        // IPv4, IPv6 and netlink (glibc's getaddrinfo asks the routing
        // tables that way, as ZeroMQ binding a kernel's ports does; it
        // reaches no host)...
        socket_rules.push(SeccompRule::new(
            [libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK]
                .into_iter()
                .map(|f| {
                    SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, f as u64)
                })
                .collect::<Result<Vec<_>, _>>()?,
        )?);
        for family in [libc::AF_INET, libc::AF_INET6] {
            let is = |f: i32| {
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, f as u64)
            };
            // ...of IPv4 and IPv6, streams only (the type's low bits; the
            // high ones are SOCK_NONBLOCK and SOCK_CLOEXEC)...
            for kind in [
                libc::SOCK_DGRAM,
                libc::SOCK_RAW,
                libc::SOCK_RDM,
                libc::SOCK_SEQPACKET,
                libc::SOCK_DCCP,
            ] {
                socket_rules.push(SeccompRule::new(vec![
                    is(family)?,
                    SeccompCondition::new(
                        1,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::MaskedEq(0xf),
                        kind as u64,
                    )?,
                ])?);
            }
            // ...and of streams, TCP only (Landlock rules TCP's ports; SCTP
            // streams it does not see).
            socket_rules.push(SeccompRule::new(vec![
                is(family)?,
                SeccompCondition::new(2, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0)?,
                SeccompCondition::new(
                    2,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Ne,
                    libc::IPPROTO_TCP as u64,
                )?,
            ])?);
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
