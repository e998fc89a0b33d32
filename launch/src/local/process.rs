//! Local kernels as processes, read from `/proc`: whether a pid is alive,
//! when it started (so a reused pid is never taken for the kernel), and
//! every process's command line (to find orphans).

/// Every live process's pid and command line (arguments joined by spaces).
pub(super) fn command_lines() -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            is_process_running(pid).then_some((pid, cmd))
        })
        .collect()
}

/// Whether `pid` is a live process (not a zombie). Reads /proc, where a
/// reaped or zombie process shows as gone or as state `Z`.
pub fn is_process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// When `pid` started, as `BOOT_ID/TICKS` (the boot, and the start time in
/// clock ticks since it, field 22 of `/proc/PID/stat`).
pub fn process_start(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is 3rd,
    // so starttime (22nd) is the 20th after it.
    let ticks = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{}/{ticks}", boot.trim()))
}

/// Whether `pid` now names another process than the one that started at
/// `started`. A pid with no process is not reused: its process group may
/// still have members (children of a kernel whose leader exited), and
/// Linux gives no new process the id of a live group.
pub(super) fn pid_reused(pid: i32, started: Option<&str>) -> bool {
    started.is_some_and(|s| process_start(pid).is_some_and(|now| now != s))
}

/// Whether `pid` is still the process that started at `started` (a locator
/// recorded before start times were kept is trusted).
pub(super) fn is_same_process(pid: i32, started: Option<&str>) -> bool {
    started.is_none_or(|s| process_start(pid).as_deref() == Some(s))
}
