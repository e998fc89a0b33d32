//! The gateway's side of a kernel's end: each kernel process is reaped as
//! soon as it exits (so it never lingers as a zombie), and, where the
//! gateway adopts orphans ([`adopt_orphans`], `lab serve`), whatever the
//! kernel left running is killed then.
//!
//! A kernel is a subreaper ([`super::tree`]), but only while it lives: when
//! it exits (asked to shut down, crashed, or an answer called `os._exit`),
//! the processes it still had are re-parented to the nearest subreaper
//! above. With [`adopt_orphans`] that is the gateway, so after each kernel
//! exit its leftovers are among the gateway's children that are no kernel,
//! and [`sweep`] kills their trees and reaps them.
//!
//! Not every such child is a leftover: `lab serve` starts no other process,
//! but as a container's PID 1 it inherits whatever is orphaned there, and
//! after `daemon & exec lab serve` the daemon is its child. A leftover of
//! a kernel is that kernel's descendant, so it started after the kernel
//! did: the sweep after a kernel's exit takes only children that started
//! no earlier than that kernel (by `/proc` start time, in clock ticks), and
//! never one this process already had when it began adopting. (A process
//! orphaned into the gateway by something else while a kernel ran may
//! still be taken for that kernel's leftover: only a cgroup tells trees
//! apart for sure.)
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

use super::tree::{Entry, Held, entry, kill_tree, snapshot};

/// The kernel processes this process spawned and has not reaped.
static KERNELS: LazyLock<Mutex<HashSet<i32>>> = LazyLock::new(Default::default);
/// Whether this process is a subreaper that kills kernels' leftovers.
static ADOPTING: AtomicBool = AtomicBool::new(false);
/// The children (pid, start time) this process had when it began
/// adopting: never anyone's leftovers.
static BEFORE: LazyLock<Mutex<HashSet<(i32, u64)>>> = LazyLock::new(Default::default);
/// One sweep at a time.
static SWEEPING: Mutex<()> = Mutex::new(());

/// Makes this process the subreaper of its kernels' leftovers, which are
/// killed when their kernel exits. Its other children are left alone: the
/// ones it has now, and any that started before the kernel that exited
/// (see the module's docs for what that leaves).
pub fn adopt_orphans() -> std::io::Result<()> {
    let me = std::process::id() as i32;
    let children: HashSet<(i32, u64)> = snapshot()
        .into_iter()
        .filter(|e| e.ppid == me)
        .map(|e| (e.pid, e.start))
        .collect();
    BEFORE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(children);
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

/// Reaps `child` when it exits, on a thread of its own; then sweeps what
/// it left.
pub(super) fn watch(mut child: std::process::Child) {
    let pid = child.id() as i32;
    // An unreaped child: its entry is there, dead or alive. Without it, no
    // sweep (nothing is known to be younger than the kernel).
    let started = entry(pid).map_or(u64::MAX, |e| e.start);
    std::thread::spawn(move || {
        wait_for_exit(pid);
        let status = {
            let mut kernels = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
            kernels.remove(&pid);
            child.wait()
        };
        tracing::info!(pid, ?status, "kernel process exited");
        sweep(started);
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

/// Whether `e` is a leftover of a kernel that started at `since`, for the
/// process `me`: its child, no kernel, no child it had before it adopted,
/// and no older than that kernel.
fn is_leftover(
    e: &Entry,
    me: i32,
    since: u64,
    kernels: &HashSet<i32>,
    before: &HashSet<(i32, u64)>,
) -> bool {
    e.ppid == me
        && e.start >= since
        && !kernels.contains(&e.pid)
        && !before.contains(&(e.pid, e.start))
}

/// Kills and reaps this process's children that a kernel started at
/// `since` (in clock ticks since boot) may have left when it exited (see
/// [`is_leftover`]). Returns how many it found. Does nothing unless this
/// process adopts orphans.
pub(super) fn sweep(since: u64) -> usize {
    if !ADOPTING.load(Ordering::SeqCst) {
        return 0;
    }
    let _one = SWEEPING.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id() as i32;
    let mut found = 0;
    // A killed leftover's own children come to this process in turn (they
    // are younger still); each round takes them, until none is left (or a
    // stuck one is given up on).
    for _ in 0..500 {
        let leftovers: Vec<_> = {
            let kernels = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
            let before = BEFORE.lock().unwrap_or_else(|e| e.into_inner());
            snapshot()
                .into_iter()
                .filter(|e| is_leftover(e, me, since, &kernels, &before))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_is_a_child_no_older_than_the_kernel_and_no_earlier_child() {
        let me = 100;
        let child = |pid, start| Entry {
            pid,
            ppid: me,
            start,
            zombie: false,
        };
        let kernels = HashSet::from([7]);
        // (A child from before adopting is older than any kernel started
        // since, but for one started in the same tick.)
        let before = HashSet::from([(8, 1000)]);
        let leftover = |e: &Entry| is_leftover(e, me, 1000, &kernels, &before);
        // Started with the kernel (the same tick) or after it.
        assert!(leftover(&child(5, 1000)));
        assert!(leftover(&child(5, 1500)));
        // Older than the kernel: someone else's child.
        assert!(!leftover(&child(5, 999)));
        // A running kernel; a child from before adopting, but not a later
        // process that has its pid.
        assert!(!leftover(&child(7, 1500)));
        assert!(!leftover(&child(8, 1000)));
        assert!(leftover(&child(8, 1200)));
        // Someone else's child.
        assert!(!leftover(&Entry {
            ppid: 1,
            ..child(5, 1500)
        }));
    }
}
