//! The resource limits a kernel gets at its start: a launch's memory limit
//! as `RLIMIT_DATA`, and a capped `RLIMIT_STACK` beside it
//! (`launch::local::child` says why those). Computed by the gateway, set
//! by the forked child before exec or by a pooled kernel at handover.

use serde::{Deserialize, Serialize};

/// One limit's soft and hard values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// The limits to set; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub data: Option<Limit>,
    pub stack: Option<Limit>,
}

impl Limits {
    /// Sets them on the calling process: system calls only, so it may run
    /// between fork and exec.
    pub fn apply(&self) -> std::io::Result<()> {
        for (resource, limit) in [
            (libc::RLIMIT_DATA, self.data),
            (libc::RLIMIT_STACK, self.stack),
        ] {
            let Some(limit) = limit else { continue };
            let rlimit = libc::rlimit {
                rlim_cur: limit.soft,
                rlim_max: limit.hard,
            };
            // SAFETY: setrlimit reads the struct it is given.
            if unsafe { libc::setrlimit(resource, &rlimit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
