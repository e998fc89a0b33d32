//! A Jupyter client over the gateway REST API and kernel websocket, speaking
//! the legacy JSON protocol that `jupyter server --gateway-url` and
//! JupyterLab-through-a-gateway use. The same client drives both servers.
//!
//! It parses only what it needs from each frame (channel, msg_type, parent
//! msg_id, execution_state) so the client is not what a measurement measures.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::servers::Server;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long any one step may take before the benchmark gives up on it.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request's idle status may lag its reply before it counts as lost.
const IDLE_AFTER_REPLY: Duration = Duration::from_secs(10);

pub struct Api {
    http: reqwest::Client,
    base: String,
    ws_base: String,
    token: String,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            ws_base: server.ws_base(),
            token: server.token.clone(),
        }
    }

    /// `POST /api/kernels`; returns the kernel id once the server answered.
    pub async fn start_kernel(&self, name: &str) -> Result<String> {
        let resp = self
            .http
            .post(format!("{}/api/kernels", self.base))
            .header("Authorization", format!("token {}", self.token))
            .json(&json!({ "name": name }))
            .timeout(STEP_TIMEOUT)
            .send()
            .await
            .context("POST /api/kernels")?;
        let status = resp.status();
        let body: Value = resp.json().await.context("kernel model")?;
        if !status.is_success() {
            bail!("POST /api/kernels answered {status}: {body}");
        }
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no kernel id in {body}"))
    }

    /// A gauge from the server's `/metrics` (Academy Lab's; none for a
    /// server without it).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .timeout(STEP_TIMEOUT)
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// How many kernels of `spec` wait in Academy Lab's warm pool now
    /// (`/api/status`); `None` when the server does not say.
    pub async fn pool_count(&self, spec: &str) -> Option<u64> {
        let status: Value = self
            .http
            .get(format!("{}/api/status", self.base))
            .header("Authorization", format!("token {}", self.token))
            .timeout(STEP_TIMEOUT)
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        status["warm_pool"][spec].as_u64()
    }

    pub async fn delete_kernel(&self, id: &str) -> Result<()> {
        self.http
            .delete(format!("{}/api/kernels/{id}", self.base))
            .header("Authorization", format!("token {}", self.token))
            .timeout(STEP_TIMEOUT)
            .send()
            .await
            .context("DELETE /api/kernels")?;
        Ok(())
    }

    pub async fn connect(&self, kernel_id: &str) -> Result<Conn> {
        let session = uuid::Uuid::new_v4().to_string();
        let url = format!(
            "{}/api/kernels/{kernel_id}/channels?session_id={session}",
            self.ws_base
        );
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("Authorization", format!("token {}", self.token).parse()?);
        let (ws, _) = tokio::time::timeout(
            STEP_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(req, None, true),
        )
        .await
        .context("websocket connect timed out")?
        .context("websocket connect")?;
        Ok(Conn { ws, session })
    }
}

/// Just the fields the benchmark reads from an incoming message.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    header: Header<'a>,
    #[serde(borrow, default)]
    parent_header: Parent<'a>,
    #[serde(borrow, default)]
    content: Content<'a>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    msg_type: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct Parent<'a> {
    #[serde(borrow, default)]
    msg_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Content<'a> {
    #[serde(borrow, default)]
    execution_state: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// What one request produced, as the client saw it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    /// Messages with this request as parent (status and reply included).
    pub messages: u64,
    /// `stream` messages among them.
    pub streams: u64,
    /// Lines of output they carried (a kernel may split or join lines).
    pub lines: u64,
    /// Bytes of all websocket frames received meanwhile.
    pub bytes: u64,
    /// From sending the request to its reply and idle status.
    pub elapsed: Duration,
    /// From the first stream message to the last one.
    pub streaming: Duration,
    /// Whether the request's idle status arrived (false: the gateway dropped messages).
    pub complete: bool,
}

/// One websocket to one kernel.
pub struct Conn {
    ws: Ws,
    session: String,
}

impl Conn {
    fn message(&self, channel: &str, msg_type: &str, content: Value) -> (String, String) {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let text = json!({
            "channel": channel,
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "bench",
                "session": self.session,
                "date": chrono::Utc::now().to_rfc3339(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "buffers": [],
        })
        .to_string();
        (msg_id, text)
    }

    /// Sends a request and reads until its reply and its idle status arrived.
    /// With `tolerate_loss`, an idle status that never follows the reply ends
    /// the request as incomplete instead of failing it: what arrived is measured.
    async fn round_trip(
        &mut self,
        channel: &str,
        msg_type: &str,
        content: Value,
        tolerate_loss: bool,
    ) -> Result<Seen> {
        let (id, text) = self.message(channel, msg_type, content);
        let started = Instant::now();
        self.ws.send(Message::text(text)).await?;
        let mut seen = Seen::default();
        let (mut replied, mut idle) = (false, false);
        let mut first_stream = None;
        let mut last_stream = started;
        let reply_type = msg_type.replace("_request", "_reply");
        // A deadline pings cannot push back: a server's keepalive frames must not
        // hide a request whose last messages were dropped.
        let mut deadline = tokio::time::Instant::now() + STEP_TIMEOUT * 3;
        let mut last_message = started;
        while !(replied && idle) {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            if next.is_err() && replied && tolerate_loss {
                seen.complete = false;
                seen.elapsed = last_message.duration_since(started);
                if let Some(first) = first_stream {
                    seen.streaming = last_stream.duration_since(first);
                }
                return Ok(seen);
            }
            let frame = next
                .map_err(|_| {
                    if replied {
                        anyhow!("{reply_type} arrived, its idle status never did: the gateway dropped messages")
                    } else {
                        anyhow!("no {reply_type} within {:?}", STEP_TIMEOUT * 3)
                    }
                })?
                .ok_or_else(|| anyhow!("the websocket closed"))??;
            let data = match &frame {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b.as_ref(),
                Message::Close(c) => bail!("the server closed the websocket: {c:?}"),
                _ => continue,
            };
            seen.bytes += data.len() as u64;
            let m: Incoming = serde_json::from_slice(data).context("a frame is not JSON")?;
            if m.parent_header.msg_id.as_deref() != Some(id.as_str()) {
                continue;
            }
            seen.messages += 1;
            last_message = Instant::now();
            match m.header.msg_type.as_ref() {
                "stream" => {
                    seen.streams += 1;
                    seen.lines +=
                        m.content
                            .text
                            .as_deref()
                            .map_or(0, |t| t.matches('\n').count()) as u64;
                    let now = Instant::now();
                    first_stream.get_or_insert(now);
                    last_stream = now;
                }
                "status" if m.content.execution_state.as_deref() == Some("idle") => idle = true,
                t if t == reply_type => {
                    if m.content.status.as_deref() == Some("error") {
                        bail!("{msg_type} failed");
                    }
                    replied = true;
                    deadline = deadline.min(tokio::time::Instant::now() + IDLE_AFTER_REPLY);
                }
                _ => {}
            }
            let _ = m.channel;
        }
        seen.complete = true;
        seen.elapsed = started.elapsed();
        if let Some(first) = first_stream {
            seen.streaming = last_stream.duration_since(first);
        }
        Ok(seen)
    }

    pub async fn execute(&mut self, code: &str) -> Result<Seen> {
        self.execute_with(code, false).await
    }

    /// A cell whose output may be dropped by the gateway: measures what arrives.
    pub async fn execute_lossy(&mut self, code: &str) -> Result<Seen> {
        self.execute_with(code, true).await
    }

    async fn execute_with(&mut self, code: &str, tolerate_loss: bool) -> Result<Seen> {
        self.round_trip(
            "shell",
            "execute_request",
            json!({
                "code": code,
                "silent": false,
                "store_history": true,
                "user_expressions": {},
                "allow_stdin": false,
                "stop_on_error": true,
            }),
            tolerate_loss,
        )
        .await
    }

    pub async fn kernel_info(&mut self) -> Result<Seen> {
        self.round_trip("shell", "kernel_info_request", json!({}), false)
            .await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
