//! The baseline without any gateway: a kernel started from its kernelspec and
//! driven over ZeroMQ directly. A gateway's *added* latency is its round trip
//! minus this one, measured in the same run on the same kernel.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, ExecutionState, JupyterMessage, JupyterMessageContent,
    KernelInfoRequest,
};
use jupyter_zmq_client as zmq;

use crate::client::{STEP_TIMEOUT, Seen};

pub struct DirectKernel {
    child: tokio::process::Child,
    shell: zmq::ClientShellConnection,
    iopub: zmq::ClientIoPubConnection,
    _dir: tempfile::TempDir,
}

impl DirectKernel {
    /// Launches `name` as Jupyter would and waits for its first kernel_info_reply.
    pub async fn start(name: &str) -> Result<DirectKernel> {
        let spec = zmq::find_kernelspec(name)
            .await
            .map_err(|e| anyhow!("kernelspec {name}: {e}"))?;
        let ports = zmq::peek_ports(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5)
            .await
            .map_err(|e| anyhow!("free ports: {e}"))?;
        let info = ConnectionInfo {
            ip: "127.0.0.1".into(),
            transport: jupyter_protocol::Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: uuid::Uuid::new_v4().to_string(),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: Some(name.to_owned()),
        };
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("kernel.json");
        std::fs::write(&file, serde_json::to_string(&info)?)?;
        let mut cmd = spec
            .command(Path::new(&file), None, None)
            .map_err(|e| anyhow!("kernel command: {e}"))?;
        let child = cmd
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("spawning the kernel")?;
        let session = uuid::Uuid::new_v4().to_string();
        let identity = zmq::peer_identity_for_session(&session).map_err(|e| anyhow!("{e}"))?;
        let mut shell =
            zmq::create_client_shell_connection_with_identity(&info, &session, identity)
                .await
                .map_err(|e| anyhow!("shell: {e}"))?;
        let iopub = zmq::create_client_iopub_connection(&info, "", &session)
            .await
            .map_err(|e| anyhow!("iopub: {e}"))?;
        let started = Instant::now();
        loop {
            shell
                .send(JupyterMessage::new(KernelInfoRequest {}, None))
                .await
                .map_err(|e| anyhow!("{e}"))?;
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(50), shell.read()).await
                && m.message_type() == "kernel_info_reply"
            {
                break;
            }
            if started.elapsed() > STEP_TIMEOUT {
                bail!("{name} never answered kernel_info");
            }
        }
        let mut k = DirectKernel {
            child,
            shell,
            iopub,
            _dir: dir,
        };
        // Replies to the extra kernel_info requests sent while it started.
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), k.shell.read()).await
        {
        }
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), k.iopub.read()).await
        {
        }
        Ok(k)
    }

    /// One cell, until its execute_reply and its idle status.
    pub async fn execute(&mut self, code: &str) -> Result<Seen> {
        let req: JupyterMessage = ExecuteRequest::new(code.to_owned()).into();
        let id = req.header.msg_id.clone();
        let started = Instant::now();
        self.shell.send(req).await.map_err(|e| anyhow!("{e}"))?;
        let mut seen = Seen::default();
        let (mut replied, mut idle) = (false, false);
        let mut first_stream = None;
        let mut last_stream = started;
        while !(replied && idle) {
            let m = tokio::time::timeout(STEP_TIMEOUT, async {
                tokio::select! {
                    m = self.shell.read() => m,
                    m = self.iopub.read() => m,
                }
            })
            .await
            .context("no reply")?
            .map_err(|e| anyhow!("{e}"))?;
            if m.parent_header.as_ref().is_none_or(|h| h.msg_id != id) {
                continue;
            }
            seen.messages += 1;
            match &m.content {
                JupyterMessageContent::StreamContent(s) => {
                    seen.streams += 1;
                    seen.lines += s.text.matches('\n').count() as u64;
                    seen.bytes += s.text.len() as u64;
                    let now = Instant::now();
                    first_stream.get_or_insert(now);
                    last_stream = now;
                }
                JupyterMessageContent::Status(s)
                    if matches!(s.execution_state, ExecutionState::Idle) =>
                {
                    idle = true
                }
                JupyterMessageContent::ExecuteReply(_) => replied = true,
                _ => {}
            }
        }
        seen.complete = true;
        seen.elapsed = started.elapsed();
        if let Some(first) = first_stream {
            seen.streaming = last_stream.duration_since(first);
        }
        Ok(seen)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
