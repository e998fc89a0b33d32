//! What the running Linux offers: its Landlock ABI (lowered in tests by
//! `LAB_TEST_LANDLOCK_ABI`), its release, and what a kernel loses under
//! `best-effort` on an older one.

use landlock::ABI;

/// The newest Landlock ABI whose rights we ask for.
pub(super) const ABI_WANTED: ABI = ABI::V6;

/// Whether the running Linux supports all the confinement we ask for.
pub(super) fn supported() -> bool {
    matches!(abi(), Some(abi) if abi >= ABI_WANTED as i32)
}

/// The Landlock ABI this gateway confines kernels with, `None` without
/// Landlock. `LAB_TEST_LANDLOCK_ABI` lowers it, so that tests see what
/// an older Linux gets.
pub(super) fn abi() -> Option<i32> {
    let real = probe();
    match std::env::var("LAB_TEST_LANDLOCK_ABI")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(forced) if forced <= 0 => None,
        Some(forced) => real.map(|r| r.min(forced)),
        None => real,
    }
}

/// The ABI this gateway needs for `require`.
pub(super) fn abi_wanted() -> i32 {
    ABI_WANTED as i32
}

/// The running Linux's release (`uname -r`), for messages.
pub(super) fn linux_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// What a kernel loses under `best-effort` on a Linux with Landlock
/// `abi` (`None`: no Landlock), one clause each; empty when nothing is.
pub(super) fn losses(abi: Option<i32>) -> Vec<&'static str> {
    let Some(abi) = abi else {
        return vec![
            "kernels are NOT confined: they read every file the gateway can (the data dir, other users' notebooks, the gateway user's home), signal and trace the gateway, and use its ports",
        ];
    };
    let mut lost = Vec::new();
    if abi < 6 {
        lost.push(
            "kernels can signal or stop the gateway and each other, and reach abstract Unix sockets (Landlock ABI 6)",
        );
    }
    if abi < 5 {
        lost.push("ioctl on the device nodes they may open is not checked (ABI 5)");
    }
    if abi < 4 {
        lost.push(
            "kernels can connect to other kernels' and the gateway's ports and squat the ports of the next kernel (ABI 4)",
        );
    }
    if abi < 3 {
        lost.push("kernels can truncate files they may only read (ABI 3)");
    }
    if abi < 2 {
        lost.push("kernels cannot rename or link files between folders (ABI 2)");
    }
    lost
}

/// The Landlock ABI of the running Linux, `None` without Landlock.
pub(super) fn probe() -> Option<i32> {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a null attribute only
    // returns the ABI version; it touches no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (v > 0).then_some(v as i32)
}
