//! An academy kernel whose gateway is gone exits on its own: with
//! `ACADEMY_ORPHAN_TIMEOUT` set (the gateway sets it), a kernel that hears
//! nothing (no heartbeat ping, no request) for that long stops, freeing its
//! memory and GPU; one that is pinged lives on. Driven over real ZeroMQ.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jupyter_protocol::{ConnectionInfo, JupyterMessage, KernelInfoRequest};
use jupyter_zmq_client as zmq;

struct Kernel {
    child: Child,
    info: ConnectionInfo,
    _dir: tempfile::TempDir,
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_kernel(orphan_timeout: &str) -> Kernel {
    let info = kernel_runtime::connection::fresh_loopback(Some("academy-candle"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kernel.json");
    std::fs::write(&file, serde_json::to_string(&info).unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_academy-kernel"))
        .args(["candle", "-f"])
        .arg(&file)
        .env("ACADEMY_ORPHAN_TIMEOUT", orphan_timeout)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut k = Kernel {
        child,
        info,
        _dir: dir,
    };
    wait_ready(&mut k).await;
    k
}

/// Asks for kernel_info until the kernel answers (it may still be binding).
async fn wait_ready(k: &mut Kernel) {
    let session = uuid::Uuid::new_v4().to_string();
    let identity = zmq::peer_identity_for_session(&session).unwrap();
    let mut shell = zmq::create_client_shell_connection_with_identity(&k.info, &session, identity)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        shell
            .send(JupyterMessage::new(KernelInfoRequest {}, None))
            .await
            .unwrap();
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), shell.read()).await {
            return;
        }
        assert!(Instant::now() < deadline, "kernel never answered");
    }
}

/// Waits up to `timeout` for the process to exit.
async fn exited_within(k: &mut Kernel, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if k.child.try_wait().unwrap().is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_kernel_no_one_pings_exits_after_its_orphan_window() {
    let mut k = start_kernel("2").await;
    let last_contact = Instant::now();
    assert!(
        exited_within(&mut k, Duration::from_secs(15)).await,
        "the orphaned kernel is still running 15 s after its last contact"
    );
    let after = last_contact.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "exited too soon, {after:?} after its last contact"
    );
}

#[tokio::test]
async fn a_kernel_pinged_on_its_heartbeat_outlives_its_orphan_window() {
    let mut k = start_kernel("1").await;
    let mut hb = zmq::create_client_heartbeat_connection(&k.info)
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        tokio::time::timeout(Duration::from_secs(2), hb.single_heartbeat())
            .await
            .expect("no pong within 2 s")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        k.child.try_wait().unwrap().is_none(),
        "the kernel exited although its heartbeat was pinged"
    );
}

#[tokio::test]
async fn a_bad_orphan_timeout_is_refused_with_a_reason() {
    let info = kernel_runtime::connection::fresh_loopback(Some("academy-candle"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kernel.json");
    std::fs::write(&file, serde_json::to_string(&info).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_academy-kernel"))
        .args(["candle", "-f"])
        .arg(&file)
        .env("ACADEMY_ORPHAN_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ACADEMY_ORPHAN_TIMEOUT"), "{stderr}");
}
