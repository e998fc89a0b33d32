//! Gives memory the gateway has freed back to the system.
//!
//! The channel sessions' replay buffers may hold hundreds of MiB while a
//! user's cells stream output, and free them when the kernel goes; a
//! thousand kernels' sockets and websockets free their buffers the same
//! way. glibc's allocator keeps freed heap memory for reuse instead of
//! returning it, so the gateway's RSS would stay at its highest for good:
//! the benchmark's P1 (100 clients at 4,000 cells a second) left it at
//! ~300 MiB with no kernel running. Once a second this compares the
//! process's resident memory with the heap in use: when what is resident
//! but not in use has grown by [`FREED`] since the last look after a trim,
//! `malloc_trim` returns the free pages (30 MiB after P1).

use std::time::Duration;

/// How much freed memory may stay resident before it is given back: a trim
/// walks the allocator's free lists, so not for every small change.
const FREED: usize = 16 << 20;

/// The least time between two trims. Under a steady load the heap frees and
/// takes memory all the time, and pages given back are faulted in again at
/// once: trimming every second cost 10% of P1's throughput; this, nothing
/// measurable.
const APART: Duration = Duration::from_secs(5);

/// Watches the heap once a second, for as long as the gateway runs.
pub async fn give_back_freed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Resident but not in use (code, stacks, and freed heap), as it was
    // after the last trim or at its lowest since.
    let mut floor: Option<usize> = None;
    let mut last = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(slack) = idle_resident() else {
            return;
        };
        let low = *floor.get_or_insert(slack);
        if slack >= low + FREED && last.elapsed() >= APART {
            last = tokio::time::Instant::now();
            // Off the async threads: a trim of a large heap takes a few ms.
            let _ = tokio::task::spawn_blocking(trim).await;
            floor = idle_resident();
        } else if slack < low {
            floor = Some(slack);
        }
    }
}

/// Resident bytes that are not heap in use; `None` where the allocator
/// cannot say.
fn idle_resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    let rss = pages * rustix::param::page_size();
    Some(rss.saturating_sub(heap_in_use()?))
}

/// Bytes of the allocator's heap in use; `None` where it cannot say.
fn heap_in_use() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 reads the allocator's counters under its locks and
    // returns them by value.
    return Some(unsafe { libc::mallinfo2() }.uordblks);
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Returns the allocator's free pages to the system.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own state under its
    // locks; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Heap freed in small pieces stays resident until a trim gives it back.
    #[test]
    fn a_trim_gives_freed_heap_back() {
        const MIB: usize = 1 << 20;
        // 256 MiB in 4 KiB pieces: below the mmap threshold, so on the heap.
        let pieces: Vec<Vec<u8>> = (0..65_536).map(|i| vec![i as u8; 4096]).collect();
        let before_free = idle_resident().unwrap();
        drop(pieces);
        let freed = idle_resident().unwrap();
        assert!(freed >= before_free + 128 * MIB, "{before_free} -> {freed}");
        trim();
        let trimmed = idle_resident().unwrap();
        assert!(trimmed + 128 * MIB <= freed, "{freed} -> {trimmed}");
    }
}
