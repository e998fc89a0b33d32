//! A kernel's whole process tree, found through `/proc` and killed.
//!
//! A process group is not a tree: a process that calls `setsid` (or
//! `setpgid`) leaves it, and a double fork hands the grandchild to init, so
//! `killpg` misses both. Every local kernel is therefore a *child subreaper*
//! (`PR_SET_CHILD_SUBREAPER`, set before exec, see [`super::child`]): any
//! process of its tree whose parent dies is re-parented to the kernel, not
//! to init. While the kernel lives, its tree is exactly its descendants by
//! parent pid, whatever they did with sessions and groups.
//!
//! [`kill_tree`] stops the root, then, round after round, every descendant
//! not yet stopped (a stopped process forks no more, so the rounds end),
//! and only then sends `SIGKILL` to all of them, the root's process group
//! (where a process outside the tree may have joined it, or a kernel of a
//! gateway from before subreapers left one) and last the root.
//!
//! Nothing unrelated is ever signalled: each process is held by a pidfd
//! ([`Held`]), opened and then checked against the start time the snapshot
//! saw, so a pid that was reused between the read and the signal is left
//! alone; the signal goes through that pidfd, and so does the group's
//! (`PIDFD_SIGNAL_PROCESS_GROUP`, Linux 6.9: the group of that very
//! process, whatever became of its pid). (On a Linux without pidfds,
//! before 5.3, the start time is checked just before a plain `kill`; one
//! without the group flag gets a `killpg` checked so, while the root is
//! stopped and held: its pid, the group's id, cannot be anyone else's.)
//!
//! What a subreaper cannot do: once the kernel itself has exited, its
//! orphans go to the next subreaper up. The gateway is one ([`super::reaper`])
//! and kills them; a process started by another gateway (re-attached after
//! a restart) has init above it instead.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One process, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub pid: i32,
    pub ppid: i32,
    /// Start time in clock ticks since boot: with `pid`, who it is.
    pub start: u64,
    /// Exited, not yet reaped (or being reaped).
    pub zombie: bool,
}

/// `pid`'s entry, if it exists.
pub(super) fn entry(pid: i32) -> Option<Entry> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields after the
    // last ')' are state (0), ppid (1), …, starttime (19).
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some(Entry {
        pid,
        ppid,
        start,
        zombie: state == "Z" || state == "X",
    })
}

/// Every process now (not atomically: one `/proc` read at a time).
pub(super) fn snapshot() -> Vec<Entry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(entry)
        .collect()
}

/// The live descendants of `root` in `table`, parents first.
pub(super) fn descendants(root: i32, table: &[Entry]) -> Vec<Entry> {
    let mut children: HashMap<i32, Vec<&Entry>> = HashMap::new();
    for e in table.iter().filter(|e| !e.zombie && e.pid != root) {
        children.entry(e.ppid).or_default().push(e);
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    let mut seen = HashSet::from([root]);
    while let Some(parent) = next.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            if seen.insert(child.pid) {
                found.push(**child);
                next.push(child.pid);
            }
        }
    }
    found
}

/// A process pinned by a pidfd: signals reach that process or nothing.
#[derive(Debug)]
pub(super) struct Held {
    entry: Entry,
    /// `None` where this Linux has no pidfds.
    fd: Option<OwnedFd>,
}

impl Held {
    /// The process `e` describes, if it is still that process and alive.
    pub(super) fn hold(e: &Entry) -> Option<Held> {
        // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, e.pid, 0u32) };
        let fd = if raw >= 0 {
            // SAFETY: a fresh fd that nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(raw as i32) })
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            None
        } else {
            return None; // gone already
        };
        // Opened first, checked second: if the pid was reused in between,
        // the start time differs and the fd (of the newcomer) is dropped.
        let now = entry(e.pid)?;
        (now.start == e.start && !now.zombie).then_some(Held { entry: *e, fd })
    }

    pub(super) fn pid(&self) -> i32 {
        self.entry.pid
    }

    /// Sends `signal`; whether it was delivered.
    pub(super) fn signal(&self, signal: libc::c_int) -> bool {
        match self.through_fd(signal, 0) {
            Some(sent) => sent.is_ok(),
            // SAFETY: kill with a pid and a signal number.
            None => self.still_itself() && unsafe { libc::kill(self.entry.pid, signal) } == 0,
        }
    }

    /// Sends `signal` to the process group this process leads (or led);
    /// whether it reached anyone. Call it while this process is stopped
    /// (or otherwise alive): where Linux has no group flag for pidfds, the
    /// pid goes to `killpg`, and only the process being alive makes that
    /// group its own.
    pub(super) fn signal_group(&self, signal: libc::c_int) -> bool {
        match self.through_fd(signal, PIDFD_SIGNAL_PROCESS_GROUP) {
            // A Linux before 6.9 has no such flag.
            Some(Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Some(sent) => return sent.is_ok(),
            None => {}
        }
        // SAFETY: killpg with a pid and a signal number.
        self.still_itself() && unsafe { libc::killpg(self.entry.pid, signal) } == 0
    }

    /// `pidfd_send_signal` with `flags`; `None` without a pidfd.
    fn through_fd(&self, signal: libc::c_int, flags: u32) -> Option<std::io::Result<()>> {
        let fd = self.fd.as_ref()?;
        // SAFETY: a plain system call on an fd this value owns.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                flags,
            )
        };
        Some(if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        })
    }

    /// Whether the pid is still this process's, alive.
    fn still_itself(&self) -> bool {
        entry(self.entry.pid).is_some_and(|now| now.start == self.entry.start && !now.zombie)
    }
}

/// `pidfd_send_signal`'s flag for the process group of the pidfd's
/// process (`linux/pidfd.h`, Linux 6.9).
const PIDFD_SIGNAL_PROCESS_GROUP: u32 = 1 << 2;

/// At most this many rounds of looking for processes forked meanwhile.
const ROUNDS: usize = 64;

/// Stops `root` and its whole tree, then kills all of it and `root`'s
/// process group; returns how many descendants were killed. `root` is
/// killed last, so while the rounds run it is still there to receive the
/// orphans of the others, and while its group is signalled it is stopped,
/// not gone: the group is still its.
pub(super) fn kill_tree(root: &Held) -> usize {
    root.signal(libc::SIGSTOP);
    let mut held: HashMap<(i32, u64), Held> = HashMap::new();
    for _ in 0..ROUNDS {
        // The root must still be itself, or its pid could lead to a stranger's children.
        if entry(root.pid()).is_none_or(|now| now.start != root.entry.start) {
            break;
        }
        let table = snapshot();
        let new: Vec<Held> = descendants(root.pid(), &table)
            .iter()
            .filter(|e| !held.contains_key(&(e.pid, e.start)))
            .filter_map(Held::hold)
            .collect();
        if new.is_empty() {
            break;
        }
        for h in new {
            h.signal(libc::SIGSTOP);
            held.insert((h.entry.pid, h.entry.start), h);
        }
    }
    let killed = held.values().filter(|h| h.signal(libc::SIGKILL)).count();
    root.signal_group(libc::SIGKILL);
    root.signal(libc::SIGKILL);
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pid: i32, ppid: i32) -> Entry {
        Entry {
            pid,
            ppid,
            start: pid as u64,
            zombie: false,
        }
    }

    #[test]
    fn descendants_are_found_through_every_generation_but_not_beside() {
        let table = [
            e(1, 0),
            e(10, 1),
            e(11, 10),
            e(12, 11),
            e(13, 10),
            e(20, 1),
            Entry {
                zombie: true,
                ..e(14, 10)
            },
        ];
        let mut found: Vec<i32> = descendants(10, &table).iter().map(|e| e.pid).collect();
        found.sort();
        assert_eq!(found, [11, 12, 13]);
        assert!(descendants(12, &table).is_empty());
    }

    #[test]
    fn this_process_is_held_and_a_stranger_with_its_pid_is_not() {
        let me = entry(std::process::id() as i32).unwrap();
        assert!(!me.zombie);
        assert!(Held::hold(&me).is_some());
        let other = Entry {
            start: me.start + 1,
            ..me
        };
        assert!(Held::hold(&other).is_none());
    }
}
