//! The local backend against real processes: a kernel's files, its
//! environment, its process group, and what its sandbox lets it reach.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

mod group;
mod memory;

fn spec_for(user: &str) -> LaunchSpec {
    LaunchSpec {
        kernel_id: uuid::Uuid::new_v4(),
        argv: vec![],
        env: BTreeMap::new(),
        cwd: PathBuf::new(),
        workdir: None,
        gpus: vec![],
        user: user.into(),
        group: None,
        gpu_model: None,
        cpu: None,
        memory: None,
        progress: None,
        launch_channel: false,
        offline: false,
        memory_limit: None,
        deadline: None,
        read_only: Vec::new(),
    }
}

#[test]
fn kernel_env_keeps_no_gateway_secret() {
    // SAFETY: tests in this module do not read LAB_SECRET concurrently.
    unsafe { std::env::set_var("LAB_SECRET", "s3cret") };
    let env = kernel_env(
        &BTreeMap::from([("A".into(), "1".into())]),
        Path::new("/home/u"),
    );
    assert!(!env.contains_key("LAB_SECRET"));
    assert_eq!(env["HOME"], "/home/u");
    assert_eq!(env["A"], "1");
}

#[tokio::test]
async fn launches_a_process_group_with_a_private_connection_file_and_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = LocalLauncher::new(dir.path().join("runtime"));
    let id = uuid::Uuid::new_v4();
    let out = dir.path().join("env.txt");
    let spec = LaunchSpec {
        kernel_id: id,
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "env > {}; cat {{connection_file}} >> {}; sleep 30",
                out.display(),
                out.display()
            ),
        ],
        env: BTreeMap::from([("KERNEL_USERNAME".into(), "alice".into())]),
        cwd: dir.path().join("alice"),
        workdir: None,
        gpus: vec!["1".into()],
        ..spec_for("alice")
    };
    let launched = launcher.launch(spec).await.unwrap();
    let file = dir.path().join(format!("runtime/kernel-{id}.json"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for _ in 0..100 {
        if std::fs::read_to_string(&out).is_ok_and(|s| s.contains("hmac-sha256")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let seen = std::fs::read_to_string(&out).unwrap();
    assert!(seen.contains("KERNEL_USERNAME=alice"), "{seen}");
    assert!(seen.contains("CUDA_VISIBLE_DEVICES=1"), "{seen}");
    assert!(launcher.is_alive(&launched.locator).await);
    launcher
        .signal(&launched.locator, KernelSignal::Kill)
        .await
        .unwrap();
    for _ in 0..100 {
        if !launcher.is_alive(&launched.locator).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!launcher.is_alive(&launched.locator).await);
    launcher.cleanup(id, &launched.locator).await;
    assert!(!file.exists());
}

/// Runs `script` as a kernel confined to `alice`'s root in a data dir
/// that also holds a database and `bob`'s notebook; returns its output.
async fn confined_run(script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("run-7/data");
    std::fs::create_dir_all(data.join("users/bob")).unwrap();
    std::fs::write(data.join("lab.db"), "token hashes").unwrap();
    std::fs::write(data.join("users/bob/secret.ipynb"), "bob's").unwrap();
    // As pytest's `pytest-current`: a link beside an ancestor, to it.
    std::os::unix::fs::symlink(dir.path().join("run-7"), dir.path().join("run-current")).unwrap();
    let launcher = LocalLauncher::new(data.join("runtime"))
        .with_sandbox(Sandbox::new(crate::sandbox::SandboxMode::Require, &data));
    let id = uuid::Uuid::new_v4();
    let script = script
        .replace("$DATA", &data.display().to_string())
        .replace("$GATEWAY", &std::process::id().to_string());
    let spec = LaunchSpec {
        kernel_id: id,
        argv: vec!["/bin/sh".into(), "-c".into(), script + "; echo END"],
        env: BTreeMap::new(),
        cwd: data.join("users/alice"),
        workdir: None,
        gpus: vec![],
        ..spec_for("alice")
    };
    let launched = launcher.launch(spec).await.unwrap();
    for _ in 0..300 {
        if launcher.log_tail(id, 4096).await.contains("END") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let out = launcher.log_tail(id, 4096).await;
    launcher.cleanup(id, &launched.locator).await;
    assert!(!data.join(format!("runtime/kernel-{id}.tmp")).exists());
    out
}

#[tokio::test]
async fn a_confined_kernel_reaches_its_own_files_but_not_the_gateways_or_other_users() {
    if !Sandbox::supported() {
        eprintln!("SKIPPED: this Linux lacks Landlock ABI 6");
        return;
    }
    let out = confined_run(
        "cat $DATA/lab.db || echo NO-DB; \
             cat $DATA/users/bob/secret.ipynb || echo NO-BOB; \
             ls $DATA/users || echo NO-LIST; \
             echo mine > own.txt && cat own.txt; \
             echo t > $TMPDIR/t && echo TMP-OK; \
             grep -q hmac {connection_file} && echo CONN-OK; \
             kill -0 $GATEWAY || echo NO-SIGNAL; \
             cat /proc/$GATEWAY/environ || echo NO-ENVIRON; \
             test -x /bin/ls && echo EXEC-OK; \
             touch /usr/lab-escape || echo NO-WRITE-USR; \
             grep CapEff /proc/self/status",
    )
    .await;
    for want in [
        "NO-DB",
        "NO-BOB",
        "NO-LIST",
        "mine",
        "TMP-OK",
        "CONN-OK",
        "NO-SIGNAL",
        "NO-ENVIRON",
        "EXEC-OK",
        "NO-WRITE-USR",
        "CapEff:\t0000000000000000",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    assert!(
        !out.contains("token hashes") && !out.contains("bob's"),
        "{out}"
    );
    assert!(!std::path::Path::new("/usr/lab-escape").exists());
}

/// Runs `argv` as a kernel of `user` confined to `data`; returns what it
/// printed once it printed `END` (or gave up waiting).
async fn run_in(data: &Path, user: &str, argv: Vec<String>, gpus: Vec<String>) -> String {
    run_with(data, user, argv, gpus, false, None).await
}

/// [`run_in`], `offline` or not, with `memory_limit` or none.
pub(super) async fn run_with(
    data: &Path,
    user: &str,
    argv: Vec<String>,
    gpus: Vec<String>,
    offline: bool,
    memory_limit: Option<u64>,
) -> String {
    let launcher = LocalLauncher::new(data.join("runtime"))
        .with_sandbox(Sandbox::new(Default::default(), data));
    let id = uuid::Uuid::new_v4();
    let spec = LaunchSpec {
        kernel_id: id,
        argv,
        env: BTreeMap::new(),
        cwd: data.join("users").join(user),
        workdir: None,
        gpus,
        offline,
        memory_limit,
        read_only: Vec::new(),
        ..spec_for(user)
    };
    let launched = launcher.launch(spec).await.unwrap();
    for _ in 0..6000 {
        if launcher.log_tail(id, 8192).await.contains("END") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let out = launcher.log_tail(id, 8192).await;
    launcher
        .signal(&launched.locator, KernelSignal::Kill)
        .await
        .unwrap();
    launcher.cleanup(id, &launched.locator).await;
    out
}

/// The venv's Python, for tests of what a confined kernel reaches; `None`
/// (the test is skipped, and says why) without Landlock ABI 6 or a venv.
pub(super) fn confined_python() -> Option<std::path::PathBuf> {
    if !Sandbox::supported() {
        eprintln!("SKIPPED: this Linux lacks Landlock ABI 6");
        return None;
    }
    venv_python()
}

/// Issue 15: a grading kernel (`offline`) connects nowhere over TCP (not
/// even to the outbound ports other kernels get) and opens no UDP socket;
/// a kernel with network does both.
#[tokio::test]
async fn an_offline_kernel_has_no_network() {
    let Some(python) = confined_python() else {
        return;
    };
    let script = r#"
import socket
def attempt(label, f):
    try:
        f(); print(label, 'OK')
    except OSError as e:
        print(label, type(e).__name__)
attempt('tcp80', lambda: socket.create_connection(('127.0.0.1', 80), timeout=2))
attempt('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
attempt('udp6', lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK))
attempt('sctp', lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132))
attempt('vsock', lambda: socket.socket(40, socket.SOCK_STREAM))
attempt('tcp-socket', lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP))
print('END')
"#;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let argv = || vec![python.display().to_string(), "-c".into(), script.to_owned()];
    let offline = run_with(&data, "grader", argv(), vec![], true, None).await;
    for want in [
        "tcp80 PermissionError",
        "udp PermissionError",
        "udp6 PermissionError",
        "sctp PermissionError",
        "vsock PermissionError",
        // It still makes TCP sockets: it listens on its own ports.
        "tcp-socket OK",
    ] {
        assert!(offline.contains(want), "{want} missing from:\n{offline}");
    }
    let online = run_with(&data, "alice", argv(), vec![], false, None).await;
    assert!(!online.contains("tcp80 PermissionError"), "{online}");
    assert!(online.contains("udp OK"), "{online}");
}

/// Issue 13, items 2, 6 and 15: what lies outside the data dir but is
/// no system tree (a planted `~/.ssh` key), a listening Unix socket,
/// the gateway's command line, a GPU node the kernel was not admitted
/// for, and another kernel's `/dev/shm` file are all out of reach.
#[tokio::test]
async fn a_confined_kernel_reaches_no_home_socket_cmdline_other_gpu_or_shared_shm() {
    let Some(python) = confined_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(dir.path().join("home/.ssh")).unwrap();
    let key = dir.path().join("home/.ssh/id_test");
    std::fs::write(&key, "PLANTED-KEY").unwrap();
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    for n in ["nvidia0", "nvidia1", "nvidiactl"] {
        std::fs::write(dev.join(n), n).unwrap();
    }
    // SAFETY: only this test sets LAB_TEST_DEV_DIR; other tests start no GPU kernel.
    unsafe { std::env::set_var("LAB_TEST_DEV_DIR", &dev) };
    let sock = dir.path().join("home/bus.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let shm = format!("/dev/shm/lab-test-{}", uuid::Uuid::new_v4().simple());
    let script = format!(
        r#"
import os, socket
def attempt(label, f):
    try:
        f(); print(label, 'OK')
    except OSError as e:
        print(label, 'DENIED', type(e).__name__)
attempt('key', lambda: print(open({key:?}).read()))
attempt('cmdline', lambda: print(open('/proc/{gw}/cmdline').read()))
attempt('unix', lambda: socket.socket(socket.AF_UNIX).connect({sock:?}))
attempt('gpu0', lambda: open({dev:?} + '/nvidia0', 'r+').read())
attempt('gpu1', lambda: open({dev:?} + '/nvidia1', 'r+').read())
attempt('shm-write', lambda: open({shm:?}, 'w').write('SHM-SECRET'))
a, b = socket.socketpair(); a.send(b'x'); print('pair', b.recv(1))
print('END')
"#,
        key = key.display().to_string(),
        gw = std::process::id(),
        sock = sock.display().to_string(),
        dev = dev.display().to_string(),
    );
    let argv = |code: String| vec![python.display().to_string(), "-c".into(), code];
    let a = run_in(&data, "alice", argv(script), vec!["0".into()]).await;
    for want in [
        "key DENIED",
        "cmdline DENIED",
        "unix DENIED",
        "gpu0 OK",
        "gpu1 DENIED",
        "shm-write OK",
        "pair b'x'",
    ] {
        assert!(a.contains(want), "{want} missing from:\n{a}");
    }
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the kernel reached the socket");
    let b = run_in(
        &data,
        "bob",
        argv(format!(
            "try:\n print(open({shm:?}).read())\nexcept OSError as e:\n print('shm-read DENIED', e)\nprint('END')"
        )),
        vec![],
    )
    .await;
    let _ = std::fs::remove_file(&shm);
    assert!(
        b.contains("shm-read DENIED") && !b.contains("SHM-SECRET"),
        "{b}"
    );
}

#[tokio::test]
async fn a_reused_pid_is_not_taken_for_the_kernel() {
    let launcher = LocalLauncher::new(std::env::temp_dir());
    let me = std::process::id() as i32;
    let this = KernelLocator::Local {
        pid: me,
        started: process_start(me),
    };
    assert!(
        this.clone()
            != KernelLocator::Local {
                pid: me,
                started: None
            }
    );
    assert!(launcher.is_alive(&this).await);
    // The same pid, started at another time: a different process.
    let other = KernelLocator::Local {
        pid: me,
        started: Some("another-boot/1".into()),
    };
    assert!(!launcher.is_alive(&other).await);
    // Killing it would kill this test's process group; it is a no-op.
    launcher.signal(&other, KernelSignal::Kill).await.unwrap();
}

#[tokio::test]
async fn sandbox_off_is_a_plain_process() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(crate::sandbox::SandboxMode::Off, dir.path());
    assert!(sandbox.prepare(&Default::default()).unwrap().is_none());
}

/// Starts `script` (sh) as an unconfined kernel in `dir` with `memory_limit`;
/// returns once it printed `END` (or gave up waiting).
pub(super) async fn start_script(
    dir: &Path,
    script: &str,
    memory_limit: Option<u64>,
) -> (LocalLauncher, uuid::Uuid, KernelLocator, String) {
    let launcher = LocalLauncher::new(dir.join("runtime"));
    let id = uuid::Uuid::new_v4();
    let spec = LaunchSpec {
        kernel_id: id,
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        cwd: dir.join("work"),
        workdir: None,
        memory_limit,
        read_only: Vec::new(),
        ..spec_for("alice")
    };
    let launched = launcher.launch(spec).await.unwrap();
    let mut out = String::new();
    for _ in 0..6000 {
        out = launcher.log_tail(id, 64 * 1024).await;
        if out.contains("END") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (launcher, id, launched.locator, out)
}

/// A pid a kernel wrote to `file` in its folder.
fn pid_in(dir: &Path, file: &str) -> i32 {
    std::fs::read_to_string(dir.join("work").join(file))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn gone_soon(pid: i32) -> bool {
    for _ in 0..300 {
        if !is_process_running(pid) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// Issue 15: a kill reaches the kernel's whole tree: a child in its group,
/// a process that left the group with `setsid` and whose parent exited
/// (re-parented to the kernel, a subreaper, not to init), and its child.
#[tokio::test]
async fn a_kill_reaches_processes_that_left_the_kernels_group() {
    let dir = tempfile::tempdir().unwrap();
    let (launcher, id, locator, out) = start_script(
        dir.path(),
        "setsid -f sh -c 'echo $$ > escaped.pid; sleep 600 & echo $! > grandchild.pid; wait'; \
         sleep 600 & echo $! > child.pid; \
         while [ ! -s grandchild.pid ]; do sleep 0.01; done; echo END; wait",
        None,
    )
    .await;
    assert!(out.contains("END"), "{out}");
    let KernelLocator::Local { pid: kernel, .. } = locator else {
        unreachable!()
    };
    let [escaped, grandchild, child] =
        ["escaped.pid", "grandchild.pid", "child.pid"].map(|f| pid_in(dir.path(), f));
    let escaped_entry = tree::entry(escaped).unwrap();
    assert_eq!(escaped_entry.ppid, kernel, "not re-parented to the kernel");
    assert_ne!(
        nix::unistd::getpgid(Some(Pid::from_raw(escaped))).unwrap(),
        Pid::from_raw(kernel),
        "it did not leave the kernel's group"
    );
    launcher.signal(&locator, KernelSignal::Kill).await.unwrap();
    for pid in [kernel, child, escaped, grandchild] {
        assert!(gone_soon(pid).await, "process {pid} outlived the kill");
    }
    launcher.cleanup(id, &locator).await;
}

/// The venv's Python, unconfined; `None` (the test is skipped) without one.
pub(super) fn venv_python() -> Option<std::path::PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if !python.exists() {
        eprintln!("SKIPPED: no .venv/bin/python");
        return None;
    }
    Some(python)
}

/// Issue 15: a launch's memory limit is each of the kernel's processes'
/// `RLIMIT_DATA`: an allocation past it fails where it is made (Python's
/// `MemoryError`, `ENOMEM` from `mmap`), smaller ones work, and a child the
/// kernel starts inherits it and cannot raise it.
#[tokio::test]
async fn a_kernels_allocations_past_its_memory_limit_fail_in_the_kernel() {
    let Some(python) = venv_python() else {
        return;
    };
    let script = r#"
import mmap, resource, subprocess, sys
def attempt(label, f):
    try:
        f(); print(label, 'OK')
    except (MemoryError, OSError, ValueError) as e:
        print(label, 'DENIED', type(e).__name__)
print('limit', resource.getrlimit(resource.RLIMIT_DATA))
attempt('small', lambda: bytearray(64 * 2**20))
attempt('bytearray', lambda: bytearray(2 * 2**30))
attempt('mmap', lambda: mmap.mmap(-1, 2 * 2**30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
attempt('raise', lambda: resource.setrlimit(resource.RLIMIT_DATA, (2**40, 2**40)))
child = "import resource\ntry:\n bytearray(2 * 2**30); print('child OK')\nexcept MemoryError:\n print('child DENIED', resource.getrlimit(resource.RLIMIT_DATA))"
print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout.strip())
attempt('after', lambda: bytearray(64 * 2**20))
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alloc.py"), script).unwrap();
    let limit = 512u64 << 20;
    let run = format!(
        "{} {}; echo END",
        python.display(),
        dir.path().join("alloc.py").display()
    );
    let (launcher, id, locator, out) = start_script(dir.path(), &run, Some(limit)).await;
    for want in [
        format!("limit ({limit}, {limit})"),
        "small OK".into(),
        "bytearray DENIED MemoryError".into(),
        "mmap DENIED OSError".into(),
        "raise DENIED".into(),
        format!("child DENIED ({limit}, {limit})"),
        "after OK".into(),
    ] {
        assert!(out.contains(&want), "{want} missing from:\n{out}");
    }
    launcher.signal(&locator, KernelSignal::Kill).await.unwrap();
    launcher.cleanup(id, &locator).await;
    // Without a limit, the kernel has the gateway's own.
    let (launcher, id, locator, out) = start_script(
        dir.path(),
        &format!(
            "{} -c 'import resource; print(\"limit\", resource.getrlimit(resource.RLIMIT_DATA))'; echo END",
            python.display()
        ),
        None,
    )
    .await;
    assert!(out.contains("limit (-1, -1)"), "{out}");
    launcher.cleanup(id, &locator).await;
}

/// evcxr compiles each academy-rust cell with cargo and rustc, which the
/// kernel starts: under the default policy's 2 GiB they still build and run.
#[tokio::test]
async fn cargo_and_rustc_build_under_the_default_memory_limit() {
    if !has_cargo() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (launcher, id, locator, out) = start_script(
        dir.path(),
        "cargo init -q --vcs none --name limited p && cd p && \
         printf 'fn main() { let v: Vec<u64> = (1..=100).collect(); println!(\"sum {}\", v.iter().sum::<u64>()); }' > src/main.rs && \
         cargo run -q --offline; echo END",
        Some(2048 << 20),
    )
    .await;
    assert!(out.contains("sum 5050"), "{out}");
    launcher.cleanup(id, &locator).await;
}

/// Whether cargo is on PATH (the test is skipped, and says so, without it).
pub(super) fn has_cargo() -> bool {
    let found = std::process::Command::new("cargo")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: no cargo on PATH");
    }
    found
}
