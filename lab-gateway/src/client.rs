//! `lab execute`: runs a notebook through a gateway (ours, or any Jupyter
//! Kernel Gateway), as papermill does, over the REST API and the kernel
//! websocket.
//!
//! It asks for a kernel (with GPUs if wanted), shows the queue position
//! while it waits, runs the code cells in order, writes their outputs into
//! the notebook in nbformat 4, and stops the kernel at the end.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the gateway at {url} cannot be reached: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the gateway answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the kernel websocket failed: {0}")]
    Websocket(String),
    #[error("the notebook is not nbformat 4: {0}")]
    Notebook(String),
    #[error("cell {cell} did not finish within {seconds} s")]
    Timeout { cell: usize, seconds: u64 },
    #[error("kernel {0} did not start: {1}")]
    NotStarted(String, String),
}

/// What to run on.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `http://host:port` (a trailing slash is fine).
    pub url: String,
    pub token: String,
    /// The kernelspec; `None`: the notebook's own, else the gateway's default.
    pub kernel: Option<String>,
    pub gpus: Option<u32>,
    pub cell_timeout: Duration,
    /// Go on after a cell fails (otherwise stop there, like nbclient).
    pub allow_errors: bool,
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub kernel_id: String,
    /// The kernel model once it ran (its `resources` say which GPUs).
    pub kernel: Value,
    pub cells_run: usize,
    /// The first failing cell (index among all cells) and its error.
    pub failed: Option<(usize, String)>,
    pub seconds: f64,
}

fn source_of(cell: &Value) -> String {
    match &cell["source"] {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

struct Gateway {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Gateway {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("Authorization", format!("token {}", self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Http { url, source })?;
        let status = resp.status().as_u16();
        let value = resp.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            return Err(ClientError::Refused {
                status,
                message: value["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string()),
            });
        }
        Ok((status, value))
    }
}

/// Runs `notebook`'s code cells on a new kernel; outputs go into `notebook`.
/// `progress` gets one line per step (queue position, cell started, …).
pub async fn run_notebook(
    opts: &RunOptions,
    notebook: &mut Value,
    mut progress: impl FnMut(&str),
) -> Result<RunSummary, ClientError> {
    if notebook["nbformat"].as_u64() != Some(4) || !notebook["cells"].is_array() {
        return Err(ClientError::Notebook("no nbformat 4 and cells".into()));
    }
    let started = Instant::now();
    let gw = Gateway {
        http: reqwest::Client::new(),
        base: opts.url.trim_end_matches('/').to_owned(),
        token: opts.token.clone(),
    };
    let name = opts.kernel.clone().or_else(|| {
        notebook["metadata"]["kernelspec"]["name"]
            .as_str()
            .map(str::to_owned)
    });
    let mut body = json!({});
    if let Some(n) = &name {
        body["name"] = json!(n);
    }
    if let Some(g) = opts.gpus {
        body["resources"] = json!({"gpus": g});
    }
    let (status, mut model) = gw
        .call(reqwest::Method::POST, "/api/kernels", Some(body))
        .await?;
    let id = model["id"].as_str().unwrap_or_default().to_owned();
    if status == 202 {
        let mut last = String::new();
        loop {
            let state = model["execution_state"].as_str().unwrap_or_default();
            if state != "queued" {
                if state == "dead" {
                    return Err(ClientError::NotStarted(
                        id,
                        model["reason"].as_str().unwrap_or("it died").to_owned(),
                    ));
                }
                break;
            }
            let line = format!(
                "queued for a GPU: position {}, about {} s ({})",
                model["queue"]["position"],
                model["queue"]["eta_seconds"],
                model["queue"]["waiting_for"].as_str().unwrap_or_default()
            );
            if line != last {
                progress(&line);
                last = line;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            model = gw
                .call(reqwest::Method::GET, &format!("/api/kernels/{id}"), None)
                .await?
                .1;
        }
    }
    let res = &model["resources"];
    progress(&format!(
        "kernel {id} ({}) on {}",
        model["name"].as_str().unwrap_or("?"),
        if res["gpus"].as_u64().unwrap_or(0) > 0 {
            format!(
                "{} × {} {}{}",
                res["gpus"],
                res["gpu_model"].as_str().unwrap_or("GPU"),
                res["devices"],
                if res["real"] == false {
                    " (modelled)"
                } else {
                    ""
                }
            )
        } else {
            "CPU".to_owned()
        }
    ));
    let result = run_cells(&gw, &id, opts, notebook, &mut progress).await;
    let _ = gw
        .call(reqwest::Method::DELETE, &format!("/api/kernels/{id}"), None)
        .await;
    let (cells_run, failed) = result?;
    Ok(RunSummary {
        kernel_id: id,
        kernel: model,
        cells_run,
        failed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

type Failure = Option<(usize, String)>;

async fn run_cells(
    gw: &Gateway,
    id: &str,
    opts: &RunOptions,
    notebook: &mut Value,
    progress: &mut impl FnMut(&str),
) -> Result<(usize, Failure), ClientError> {
    let ws_base = gw.base.replacen("http", "ws", 1);
    let session = uuid::Uuid::new_v4().to_string();
    let url = format!(
        "{ws_base}/api/kernels/{id}/channels?session_id={session}&token={}",
        gw.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, None, true)
        .await
        .map_err(|e| ClientError::Websocket(e.to_string()))?;
    let cells = notebook["cells"].as_array_mut().expect("checked above");
    let total = cells.iter().filter(|c| c["cell_type"] == "code").count();
    let mut run = 0;
    let mut failed = None;
    for (index, cell) in cells.iter_mut().enumerate() {
        if cell["cell_type"] != "code" {
            continue;
        }
        run += 1;
        let code = source_of(cell);
        progress(&format!("cell {run}/{total}"));
        let msg_id = uuid::Uuid::new_v4().to_string();
        let request = json!({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "lab",
                       "session": session, "date": chrono::Utc::now().to_rfc3339(), "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": false, "store_history": true,
                        "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
        });
        ws.send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| ClientError::Websocket(e.to_string()))?;
        let mut outputs: Vec<Value> = Vec::new();
        let mut reply: Option<Value> = None;
        let mut idle = false;
        let deadline = Instant::now() + opts.cell_timeout;
        while reply.is_none() || !idle {
            let left = deadline.saturating_duration_since(Instant::now());
            let next =
                tokio::time::timeout(left, ws.next())
                    .await
                    .map_err(|_| ClientError::Timeout {
                        cell: index,
                        seconds: opts.cell_timeout.as_secs(),
                    })?;
            let text = match next {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Websocket(e.to_string())),
                None => return Err(ClientError::Websocket("closed by the gateway".into())),
            };
            let Ok(m) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if m["parent_header"]["msg_id"] != msg_id.as_str() {
                continue;
            }
            let content = &m["content"];
            match m["msg_type"].as_str().unwrap_or_default() {
                "execute_reply" => reply = Some(content.clone()),
                "status" if content["execution_state"] == "idle" => idle = true,
                "stream" => {
                    let name = content["name"].as_str().unwrap_or("stdout");
                    let text = content["text"].as_str().unwrap_or_default();
                    match outputs.last_mut() {
                        Some(o) if o["output_type"] == "stream" && o["name"] == name => {
                            let joined =
                                format!("{}{text}", o["text"].as_str().unwrap_or_default());
                            o["text"] = json!(joined);
                        }
                        _ => outputs
                            .push(json!({"output_type": "stream", "name": name, "text": text})),
                    }
                }
                "execute_result" => outputs.push(json!({
                    "output_type": "execute_result",
                    "data": content["data"], "metadata": content["metadata"],
                    "execution_count": content["execution_count"],
                })),
                "display_data" => outputs.push(json!({
                    "output_type": "display_data",
                    "data": content["data"], "metadata": content["metadata"],
                })),
                "update_display_data" => {
                    let display_id = &content["transient"]["display_id"];
                    for o in outputs.iter_mut() {
                        if o["output_type"] == "display_data" && &o["_display_id"] == display_id {
                            o["data"] = content["data"].clone();
                        }
                    }
                }
                "error" => outputs.push(json!({
                    "output_type": "error",
                    "ename": content["ename"], "evalue": content["evalue"],
                    "traceback": content["traceback"],
                })),
                "clear_output" => outputs.clear(),
                _ => {}
            }
            // Remember display ids so updates land in place (not saved).
            if m["msg_type"] == "display_data"
                && let Some(o) = outputs.last_mut()
            {
                o["_display_id"] = content["transient"]["display_id"].clone();
            }
        }
        for o in &mut outputs {
            if let Some(obj) = o.as_object_mut() {
                obj.remove("_display_id");
            }
        }
        let reply = reply.unwrap_or_default();
        cell["execution_count"] = reply["execution_count"].clone();
        cell["outputs"] = json!(outputs);
        if reply["status"] != "ok" && failed.is_none() {
            let why = format!(
                "{}: {}",
                reply["ename"].as_str().unwrap_or("error"),
                reply["evalue"].as_str().unwrap_or_default()
            );
            progress(&format!("cell {run}/{total} failed: {why}"));
            failed = Some((index, why));
            if !opts.allow_errors {
                break;
            }
        }
    }
    let _ = ws.close(None).await;
    Ok((run, failed))
}
