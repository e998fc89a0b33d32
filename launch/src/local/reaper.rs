//! The gateway's side of a kernel's end: each kernel process is reaped as
//! soon as it exits (so it never lingers as a zombie), and, where the
//! gateway adopts orphans ([`adopt_orphans`], `lab serve`), whatever the
//! kernel left running is killed then.
//!
//! A kernel is a subreaper ([`super::tree`]), but only while it lives: when
//! it exits (asked to shut down, crashed, or an answer called `os._exit`),
//! the processes it still had are re-parented to the nearest subreaper
//! above. With [`adopt_orphans`] that is the gateway, so after each kernel
//! exit its leftovers are the gateway's children that are no kernel, and
//! [`sweep`] kills their trees and reaps them. `lab serve` starts no other
//! process, so such a child can only come from a kernel; a process that
//! does start others does not adopt.
//!
//! Every kernel pid this process spawned and has not reaped is in
//! `KERNELS`: added under its lock around the spawn, removed under it just
//! before the reap (the exit is awaited with `WNOWAIT`, so the pid cannot
//! be reused while it is still listed). The sweep reads the table under the
//! same lock, so no kernel is ever taken for a leftover; a leftover is an
//! unreaped child, so its pid stays its own until the sweep reaps it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use super::tree::{Held, kill_tree, snapshot};

/// The kernel processes this process spawned and has not reaped.
static KERNELS: LazyLock<Mutex<HashSet<i32>>> = LazyLock::new(Default::default);
/// Whether this process is a subreaper that kills kernels' leftovers.
static ADOPTING: AtomicBool = AtomicBool::new(false);
/// One sweep at a time.
static SWEEPING: Mutex<()> = Mutex::new(());

/// Makes this process the subreaper of its kernels' leftovers, which are
/// killed when their kernel exits. For a process whose only children are
/// the kernels it launches (`lab serve`): any other child that is no kernel
/// would be taken for a leftover.
pub fn adopt_orphans() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    ADOPTING.store(true, Ordering::SeqCst);
    Ok(())
}

/// Spawns a kernel process and listens to it as a kernel.
pub(super) fn spawn(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut kernels = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    kernels.insert(child.id() as i32);
    Ok(child)
}

/// Reaps `child` when it exits, on a thread of its own; then sweeps.
pub(super) fn watch(mut child: std::process::Child) {
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        wait_for_exit(pid);
        let status = {
            let mut kernels = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
            kernels.remove(&pid);
            child.wait()
        };
        tracing::info!(pid, ?status, "kernel process exited");
        sweep();
    });
}

/// Waits until `pid` (a child) has exited, without reaping it.
fn wait_for_exit(pid: i32) {
    loop {
        // SAFETY: waitid writes into the zeroed siginfo it is given.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Kills and reaps this process's children that are no kernel: the
/// leftovers of kernels that exited. Returns how many it found. Does
/// nothing unless this process adopts orphans.
pub(super) fn sweep() -> usize {
    if !ADOPTING.load(Ordering::SeqCst) {
        return 0;
    }
    let _one = SWEEPING.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id() as i32;
    let mut found = 0;
    // A killed leftover's own children come to this process in turn; each
    // round takes them, until none is left (or a stuck one is given up on).
    for _ in 0..500 {
        let leftovers: Vec<_> = {
            let kernels = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
            snapshot()
                .into_iter()
                .filter(|e| e.ppid == me && !kernels.contains(&e.pid))
                .collect()
        };
        if leftovers.is_empty() {
            break;
        }
        for e in &leftovers {
            if !e.zombie
                && let Some(h) = Held::hold(e)
            {
                found += 1;
                let under = kill_tree(&h);
                tracing::warn!(
                    pid = h.pid(),
                    descendants = under,
                    "killed a process a kernel left running when it exited"
                );
            }
            // SAFETY: waitpid on a child of this process that is no kernel.
            unsafe { libc::waitpid(e.pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    found
}
