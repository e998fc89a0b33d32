//! The seccomp filter of a confined kernel, built in the gateway (it
//! allocates) and loaded by the child.
//!
//! # Memory a limit does not count
//!
//! A kernel with a memory limit has it as `RLIMIT_DATA` (`local::child`),
//! which counts private writable mappings only. Where the filter closes
//! the rest, for such a kernel only (every other kernel keeps it all):
//!
//! - shared anonymous memory: `mmap` with `MAP_SHARED` (or
//!   `MAP_SHARED_VALIDATE`) and `MAP_ANONYMOUS` (Python's default
//!   `mmap.mmap(-1, n)`), `memfd_create`, `memfd_secret` and `shmget`
//!   fail with `EACCES`. (Landlock does the rest: no `/dev/shm`, so no
//!   POSIX shared memory, and `/dev/zero` read only, so no writable
//!   shared mapping of it; see `paths`.) A shared mapping of a *file*
//!   stays allowed (rustc reads its libraries so): it is page cache,
//!   written back to the file's disk;
//! - stack mappings, which `RLIMIT_DATA` leaves to `RLIMIT_STACK`: `mmap`
//!   with `MAP_GROWSDOWN` fails, and so does every `mremap`, which could
//!   move the stack's lowest page and grow it to any size (glibc's
//!   `realloc` copies when `mremap` fails). The stack itself is bounded by
//!   `RLIMIT_STACK`, which the child caps at the limit.

use super::error::SandboxError;
use super::grants::Grants;

/// A seccomp program that fails `socket(AF_UNIX, …)` (pathname sockets are
/// beyond Landlock) and `io_uring_setup` (io_uring creates sockets without
/// the `socket` system call) with `EACCES`; `offline`, every socket but a
/// TCP stream over IPv4 or IPv6 and netlink (Landlock rules TCP only: UDP,
/// raw, SCTP, vsock and the rest would be ways out); `memory_limited`, the
/// memory `RLIMIT_DATA` does not count (see the module's docs).
pub(super) fn program(grants: &Grants) -> Result<seccompiler::BpfProgram, SandboxError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let offline = grants.offline;
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
    let mut rules = vec![
        (libc::SYS_socket, socket_rules),
        (libc::SYS_io_uring_setup, vec![]),
    ];
    if grants.memory_limited {
        // mmap's flags (its fourth argument) with these bits set.
        let flags = |bits: libc::c_int| {
            SeccompRule::new(vec![SeccompCondition::new(
                3,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(bits as u64),
                bits as u64,
            )?])
        };
        rules.extend([
            (
                libc::SYS_mmap,
                vec![
                    // MAP_SHARED is bit 0 of MAP_SHARED_VALIDATE too.
                    flags(libc::MAP_SHARED | libc::MAP_ANONYMOUS)?,
                    flags(libc::MAP_GROWSDOWN)?,
                ],
            ),
            (libc::SYS_mremap, vec![]),
            (libc::SYS_memfd_create, vec![]),
            (libc::SYS_memfd_secret, vec![]),
            (libc::SYS_shmget, vec![]),
        ]);
    }
    let filter = SeccompFilter::new(
        rules.into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        std::env::consts::ARCH.try_into()?,
    )?;
    Ok(filter.try_into()?)
}
