//! `academy-kernel execute NOTEBOOK`: runs a notebook's code cells through a
//! kernel over ZeroMQ, printing what they output.
//!
//! It exists for machines without Python's Jupyter clients, such as the GPU
//! hosts, where the binary travels alone: the kernel is this same binary,
//! launched as Jupyter would launch it, and driven through the wire protocol.

use std::path::Path;
use std::time::Duration;

use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, ExecutionState, JupyterMessage, JupyterMessageContent,
    KernelInfoRequest, MediaType, ReplyStatus,
};
use jupyter_zmq_client as zmq;

use crate::Language;

/// Why a notebook run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read notebook {0}: {1}")]
    Read(String, String),
    #[error("kernel: {0}")]
    Kernel(String),
    #[error("cell {index} failed: {ename}: {evalue}")]
    Cell {
        index: usize,
        ename: String,
        evalue: String,
    },
}

/// The code cells of an nbformat 4 notebook, and its kernel language.
pub fn read_notebook(path: &Path) -> Result<(Language, Vec<String>), RunError> {
    let read = |e: String| RunError::Read(path.display().to_string(), e);
    let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
    let nb: serde_json::Value = serde_json::from_str(&text).map_err(|e| read(e.to_string()))?;
    let language = match nb["metadata"]["kernelspec"]["name"].as_str() {
        Some("academy-rust") => Language::Rust,
        Some("academy-candle") | None => Language::Candle,
        Some(other) => return Err(read(format!("kernel {other:?} is not an academy kernel"))),
    };
    let cells = nb["cells"]
        .as_array()
        .ok_or_else(|| read("no cells".into()))?
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .map(|c| match &c["source"] {
            serde_json::Value::Array(lines) => lines.iter().filter_map(|l| l.as_str()).collect(),
            serde_json::Value::String(s) => s.clone(),
            _ => String::new(),
        })
        .collect();
    Ok((language, cells))
}

/// Runs every code cell of `path` on a fresh kernel started from `binary`.
pub async fn execute(path: &Path, binary: &Path) -> Result<(), RunError> {
    let kernel = |e: String| RunError::Kernel(e);
    let (language, cells) = read_notebook(path)?;
    let info = crate::connection::fresh_loopback(Some(language.kernelspec_name()))
        .await
        .map_err(|e| kernel(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("academy-execute-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| kernel(e.to_string()))?;
    let file = dir.join("kernel.json");
    std::fs::write(&file, serde_json::to_string(&info).unwrap_or_default())
        .map_err(|e| kernel(e.to_string()))?;
    let mut child = tokio::process::Command::new(binary)
        .arg(match language {
            Language::Rust => "rust",
            Language::Candle => "candle",
        })
        .arg("-f")
        .arg(&file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| kernel(format!("cannot start {}: {e}", binary.display())))?;
    // A kernel that dies (a crash in a CUDA library, say) ends the run with
    // its exit status, rather than leaving the client waiting on its sockets.
    let result = tokio::select! {
        result = drive(&info, &cells) => result,
        status = child.wait() => Err(kernel(match status {
            Ok(status) => format!("the kernel exited ({status}) before the notebook finished"),
            Err(e) => format!("lost the kernel process: {e}"),
        })),
    };
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn drive(info: &ConnectionInfo, cells: &[String]) -> Result<(), RunError> {
    let kernel = |e: zmq::RuntimeError| RunError::Kernel(e.to_string());
    let session = uuid::Uuid::new_v4().to_string();
    let identity = zmq::peer_identity_for_session(&session).map_err(kernel)?;
    let mut shell = zmq::create_client_shell_connection_with_identity(info, &session, identity)
        .await
        .map_err(kernel)?;
    let mut iopub = zmq::create_client_iopub_connection(info, "", &session)
        .await
        .map_err(kernel)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        shell
            .send(JupyterMessage::new(KernelInfoRequest {}, None))
            .await
            .map_err(kernel)?;
        match tokio::time::timeout(Duration::from_millis(200), shell.read()).await {
            Ok(Ok(m)) => {
                if let JupyterMessageContent::KernelInfoReply(r) = &m.content {
                    println!("{}", r.banner);
                }
                break;
            }
            _ if std::time::Instant::now() > deadline => {
                return Err(RunError::Kernel(
                    "the kernel did not start within 120 s".into(),
                ));
            }
            _ => {}
        }
    }
    // Let iopub subscribe before the first cell, and drop stale replies.
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), shell.read()).await {}
    for (index, code) in cells.iter().enumerate() {
        let req: JupyterMessage = ExecuteRequest::new(code.clone()).into();
        let id = req.header.msg_id.clone();
        shell.send(req).await.map_err(kernel)?;
        loop {
            let m = iopub.read().await.map_err(kernel)?;
            if m.parent_header.as_ref().is_none_or(|h| h.msg_id != id) {
                continue;
            }
            match &m.content {
                JupyterMessageContent::StreamContent(s) => print!("{}", s.text),
                JupyterMessageContent::ExecuteResult(r) => print_media(&r.data.content),
                JupyterMessageContent::DisplayData(d) => print_media(&d.data.content),
                JupyterMessageContent::ErrorOutput(e) => eprintln!("{}", e.traceback.join("\n")),
                JupyterMessageContent::Status(s)
                    if matches!(s.execution_state, ExecutionState::Idle) =>
                {
                    break;
                }
                _ => {}
            }
        }
        let reply = shell.read().await.map_err(kernel)?;
        if let JupyterMessageContent::ExecuteReply(r) = reply.content
            && matches!(r.status, ReplyStatus::Error)
        {
            let e = r.error.map(|e| *e).unwrap_or_default();
            return Err(RunError::Cell {
                index,
                ename: e.ename,
                evalue: e.evalue,
            });
        }
    }
    Ok(())
}

fn print_media(media: &[MediaType]) {
    for m in media {
        if let MediaType::Plain(s) = m {
            println!("{s}");
            return;
        }
    }
}
