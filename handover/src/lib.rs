//! The launch channel: what a local kernel and the gateway that starts it
//! say to each other while it starts, and the confinement a kernel applies
//! to itself.
//!
//! The gateway gives each academy kernel one end of a `SOCK_SEQPACKET`
//! socketpair ([`channel`]), named by `ACADEMY_LAUNCH_FD`. A kernel started
//! for its user (a cold start, confined before exec by the gateway) only
//! reports, once all five of its sockets listen, that it does
//! ([`Report::Listening`]), so the gateway connects once, at the right
//! moment, instead of polling a port.
//!
//! A *pooled* kernel (`ACADEMY_POOLED=1`) is started before anyone owns it.
//! It loads, reports [`Report::Waiting`] and blocks, with one thread and
//! nothing of any user's open (it reads even its connection file only
//! after its handover, confined). When a start
//! takes it, the gateway sends a [`Handover`]: the folder, the environment,
//! the memory limits and the [`Confinement`] a cold start of the same user
//! would get, with the Landlock ruleset's descriptor beside it
//! (`SCM_RIGHTS`). The kernel applies all of it to itself, still single
//! threaded, so the whole process is confined, and only then starts its
//! runtime, binds and reports `Listening`. If the gateway goes away first,
//! the kernel reads the end of the channel and exits.
//!
//! Applying happens in two places with the same code: in a forked child
//! before exec (cold starts, `launch::local`) and in a pooled kernel at
//! handover. Everything the kernel needs is built by the gateway; the
//! kernel only makes system calls.

pub mod channel;
pub mod confinement;
pub mod limits;
mod message;

pub use channel::End;
pub use confinement::{Confinement, Instruction, Mounts};
pub use limits::Limits;
pub use message::{Handover, HandoverError, Report};

/// How many threads this process has now.
pub fn threads() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The names of this process's threads, for a message.
pub fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// The pids of this process's children (of every thread), from
/// `/proc/self/task/*/children`; empty where the kernel does not say.
pub fn children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Waits, at most `limit`, until this process has one thread and no child
/// process: what a pooled kernel started while it waited for its handover
/// (threads joined or let go, processes waited for) is gone only once the
/// system has reaped it. True once alone.
pub fn wait_until_alone(limit: std::time::Duration) -> std::io::Result<bool> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if threads()? == 1 && children().is_empty() {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        // A detached thread's end sends no event this process can wait on.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
