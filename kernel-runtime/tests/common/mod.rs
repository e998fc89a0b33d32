//! The kernel binary started as Jupyter starts it, and the client side of
//! its ZeroMQ sockets, for the tests that drive it over the wire.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jupyter_protocol::{ConnectionInfo, JupyterMessage, JupyterMessageContent, KernelInfoRequest};
use jupyter_zmq_client as zmq;

pub struct Kernel {
    child: Child,
    pub info: ConnectionInfo,
    _dir: tempfile::TempDir,
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `academy-kernel <language> -f CONN` (`language` is "rust" or "candle").
pub async fn start_kernel(language: &str) -> Kernel {
    let info = kernel_runtime::connection::fresh_loopback(Some(&format!("academy-{language}")))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kernel.json");
    std::fs::write(&file, serde_json::to_string(&info).unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_academy-kernel"))
        .args([language, "-f"])
        .arg(&file)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Kernel {
        child,
        info,
        _dir: dir,
    }
}

/// A shell connection with its own ZeroMQ identity for `session`.
pub async fn shell_for(info: &ConnectionInfo, session: &str) -> zmq::ClientShellConnection {
    let identity = zmq::peer_identity_for_session(session).expect("identity");
    zmq::create_client_shell_connection_with_identity(info, session, identity)
        .await
        .unwrap()
}

/// Asks for kernel_info until the kernel answers (it may still be binding).
pub async fn wait_ready(shell: &mut zmq::ClientShellConnection) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        shell
            .send(JupyterMessage::new(KernelInfoRequest {}, None))
            .await
            .unwrap();
        if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(500), shell.read()).await
        {
            assert_eq!(reply.message_type(), "kernel_info_reply");
            return;
        }
        assert!(Instant::now() < deadline, "kernel never answered");
    }
}

/// Waits until the kernel answers and `iopub` receives what it publishes: a
/// SUB socket's subscription reaches the PUB side some time after connect,
/// and messages published before that are lost (ZeroMQ's slow joiner), so
/// a kernel_info's status on iopub is the proof, as jupyter_client waits.
pub async fn wait_subscribed(
    shell: &mut zmq::ClientShellConnection,
    iopub: &mut zmq::ClientIoPubConnection,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = JupyterMessage::new(KernelInfoRequest {}, None);
        let id = req.header.msg_id.clone();
        shell.send(req).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(500), shell.read())
            .await
            .is_ok()
        {
            let seen = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    let m = iopub.read().await.unwrap();
                    if m.parent_header.as_ref().map(|h| h.msg_id.as_str()) == Some(id.as_str()) {
                        return;
                    }
                }
            })
            .await;
            if seen.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "kernel never answered on iopub");
    }
}

/// Collects iopub messages of `parent` until its idle status.
pub async fn outputs_of(
    iopub: &mut zmq::ClientIoPubConnection,
    parent: &str,
) -> Vec<JupyterMessage> {
    let mut all = outputs_of_each(iopub, &[parent.to_owned()], Duration::from_secs(20)).await;
    all.remove(parent).unwrap_or_default()
}

/// Collects iopub messages per parent until each of `parents` is idle
/// (status messages left out); waits at most `quiet` for any one message.
pub async fn outputs_of_each(
    iopub: &mut zmq::ClientIoPubConnection,
    parents: &[String],
    quiet: Duration,
) -> HashMap<String, Vec<JupyterMessage>> {
    let mut out: HashMap<String, Vec<JupyterMessage>> = HashMap::new();
    let mut idle = 0;
    while idle < parents.len() {
        let msg = tokio::time::timeout(quiet, iopub.read())
            .await
            .expect("iopub timed out")
            .unwrap();
        let Some(parent) = msg.parent_header.as_ref().map(|h| h.msg_id.clone()) else {
            continue;
        };
        if !parents.contains(&parent) {
            continue;
        }
        match &msg.content {
            JupyterMessageContent::Status(s)
                if matches!(s.execution_state, jupyter_protocol::ExecutionState::Idle) =>
            {
                idle += 1;
            }
            JupyterMessageContent::Status(_) => {}
            _ => out.entry(parent).or_default().push(msg),
        }
    }
    out
}
