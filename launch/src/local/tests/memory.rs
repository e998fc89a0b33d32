//! Issue 15, the memory limit's holes: memory `RLIMIT_DATA` does not count
//! is closed to a confined kernel that has a limit (a grading kernel), and
//! left to one that has none.

use super::*;

/// Tries each way around `RLIMIT_DATA` with `sys.argv[1]` bytes, one line
/// each: `label OK` or `label DENIED ErrorType`, then `END`.
const PROBES: &str = r#"
import ctypes, mmap, os, resource, sys
N = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.malloc.restype = ctypes.c_void_p
libc.realloc.restype = ctypes.c_void_p
libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
FAILED = (None, 2**64 - 1)

def attempt(label, f):
    try:
        f(); print(label, 'OK', flush=True)
    except (MemoryError, OSError, ValueError) as e:
        print(label, 'DENIED', type(e).__name__, flush=True)

def touch(m, n=None):
    for i in range(0, n or len(m), 4096):
        m[i] = 1

def errno(what):
    e = ctypes.get_errno()
    raise OSError(e, what + ': ' + os.strerror(e))

def shared():
    m = mmap.mmap(-1, N)  # Python's default: MAP_SHARED | MAP_ANONYMOUS
    touch(m); m.close()

def memfd():
    fd = os.memfd_create('probe')
    try:
        os.ftruncate(fd, N); m = mmap.mmap(fd, N); touch(m); m.close()
    finally:
        os.close(fd)

def posix_shm():
    from multiprocessing import shared_memory
    s = shared_memory.SharedMemory(create=True, size=N)
    try:
        touch(s.buf, N)
    finally:
        s.close(); s.unlink()

def dev_zero():
    fd = os.open('/dev/zero', os.O_RDWR)
    try:
        m = mmap.mmap(fd, N); touch(m); m.close()
    finally:
        os.close(fd)

def sysv():
    sid = libc.shmget(0, ctypes.c_size_t(N), 0o1600)
    if sid < 0: errno('shmget')
    addr = libc.shmat(sid, None, 0)
    libc.shmctl(sid, 0, None)  # IPC_RMID: gone once detached
    if addr in FAILED: errno('shmat')
    ctypes.memset(addr, 1, N); libc.shmdt(ctypes.c_void_p(addr))

def growsdown():
    m = mmap.mmap(-1, N, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x0100)
    touch(m); m.close()

def stack_mremap():
    # The stack's lowest page, moved and grown: a stack mapping, which
    # RLIMIT_DATA does not count.
    start = next(int(l.split('-')[0], 16) for l in open('/proc/self/maps') if '[stack]' in l)
    addr = libc.mremap(start, 4096, N, 1)
    if addr in FAILED: errno('mremap')
    ctypes.memset(addr, 1, N)

def stack_rlimit():
    resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

def file_shared():
    with open('mapped', 'w+b') as f:
        f.truncate(16 << 20); m = mmap.mmap(f.fileno(), 16 << 20); touch(m); m.close()

def realloc():
    p = libc.malloc(1 << 20)
    p = libc.realloc(ctypes.c_void_p(p), 64 << 20)
    if not p: raise MemoryError('realloc')
    libc.free(ctypes.c_void_p(p))

attempt('shared', shared)
attempt('memfd', memfd)
attempt('posix-shm', posix_shm)
attempt('dev-zero', dev_zero)
attempt('sysv', sysv)
attempt('growsdown', growsdown)
attempt('private', lambda: touch(mmap.mmap(-1, N, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)))
attempt('stack-rlimit', stack_rlimit)
attempt('small', lambda: bytearray(16 << 20))
attempt('file-shared', file_shared)
attempt('realloc', realloc)
attempt('dev-zero-read', lambda: open('/dev/zero', 'rb').read(16))
attempt('stack-mremap', stack_mremap)
print('END')
"#;

/// Whether the probe `label` printed `verdict`.
fn said(out: &str, label: &str, verdict: &str) -> bool {
    out.lines()
        .any(|l| l.starts_with(&format!("{label} {verdict}")))
}

/// Runs [`PROBES`] with `size` bytes in a confined kernel of `user`, under
/// `memory_limit`.
async fn probe(python: &Path, user: &str, size: u64, memory_limit: Option<u64>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let argv = vec![
        python.display().to_string(),
        "-c".into(),
        PROBES.into(),
        size.to_string(),
    ];
    run_with(&data, user, argv, vec![], true, memory_limit).await
}

/// Shared memory (a `MAP_SHARED` anonymous mapping, Python's default
/// `mmap`; a memfd; POSIX shared memory in `/dev/shm`; a shared mapping of
/// `/dev/zero`; System V segments) and stack mappings (`MAP_GROWSDOWN`, the
/// stack moved and grown by `mremap`, a raised `RLIMIT_STACK`) are not
/// `RLIMIT_DATA`'s: a kernel with a limit may make none of them. What it
/// needs still works: private memory under the limit, a shared mapping of
/// a file, `realloc` (glibc copies when `mremap` fails), reading
/// `/dev/zero`.
#[tokio::test]
async fn a_kernel_with_a_memory_limit_gets_no_memory_the_limit_does_not_count() {
    let Some(python) = confined_python() else {
        return;
    };
    let limit = 128u64 << 20;
    let out = probe(&python, "grader", 2 * limit, Some(limit)).await;
    for label in [
        "shared",
        "memfd",
        "posix-shm",
        "dev-zero",
        "sysv",
        "growsdown",
        "private",
        "stack-rlimit",
        "stack-mremap",
    ] {
        assert!(said(&out, label, "DENIED"), "{label} not denied:\n{out}");
    }
    for label in ["small", "file-shared", "realloc", "dev-zero-read"] {
        assert!(said(&out, label, "OK"), "{label}:\n{out}");
    }
}

/// A kernel without a limit (every kernel but a grading one) keeps shared
/// memory: the filter and the grants are as before.
#[tokio::test]
async fn a_kernel_without_a_memory_limit_keeps_shared_memory() {
    let Some(python) = confined_python() else {
        return;
    };
    let out = probe(&python, "alice", 16 << 20, None).await;
    for label in [
        "shared",
        "memfd",
        "posix-shm",
        "dev-zero",
        "sysv",
        "growsdown",
        "private",
    ] {
        assert!(said(&out, label, "OK"), "{label}:\n{out}");
    }
}

/// evcxr compiles each academy-rust cell with cargo and rustc: confined,
/// under the default policy's 2 GiB (so without shared anonymous memory,
/// memfds or `mremap`), they still build and run.
#[tokio::test]
async fn cargo_and_rustc_build_confined_under_the_default_memory_limit() {
    if confined_python().is_none() || !has_cargo() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = "cargo init -q --vcs none --name limited p && cd p && \
         printf 'fn main() { let v: Vec<u64> = (1..=100).collect(); println!(\"sum {}\", v.iter().sum::<u64>()); }' > src/main.rs && \
         cargo run -q --offline 2>&1; echo END";
    let argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
    let out = run_with(
        &dir.path().join("data"),
        "grader",
        argv,
        vec![],
        true,
        Some(2048 << 20),
    )
    .await;
    assert!(out.contains("sum 5050"), "{out}");
}
