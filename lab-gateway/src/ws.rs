//! The websocket bridge: `/api/kernels/{id}/channels`.
//!
//! Each websocket gets its own DEALER sockets (shell, control, stdin) with a
//! fresh ZeroMQ identity, so replies always go to the socket that asked, and
//! iopub arrives through the kernel's shared subscriber. Frames use the legacy
//! JSON protocol, the one `jupyter server --gateway-url` and JupyterLab behind
//! a gateway speak. A bad frame closes the socket with a code that says why;
//! other clients of the kernel are unaffected.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use zeromq::{SocketRecv, SocketSend};

use crate::kernels::{Kernel, dealer};
use crate::metrics::{Metrics, TO_CLIENT, TO_KERNEL};
use crate::wire::{Channel, RawMessage, Signer, WireError};

/// How often the gateway pings an idle client; three missed periods close it.
pub const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest frame a client may send (messages carry code, not data).
pub const MAX_FRAME: usize = 16 << 20;

/// Close codes (RFC 6455 and the private range).
pub mod close {
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const RESTART: u16 = 1012;
    pub const UNSUPPORTED: u16 = 1003;
    pub const KERNEL_GONE: u16 = 4004;
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

/// One open DEALER per request channel, their receive halves feeding `replies`.
struct Dealers {
    shell: zeromq::DealerSendHalf,
    control: zeromq::DealerSendHalf,
    stdin: zeromq::DealerSendHalf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    signer: Signer,
}

impl Drop for Dealers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn open_dealers(
    kernel: &Kernel,
    replies: &mpsc::Sender<(Channel, RawMessage)>,
) -> Result<Dealers, zeromq::ZmqError> {
    let endpoint = kernel.endpoint().borrow().clone();
    let identity = uuid::Uuid::new_v4().as_bytes().to_vec();
    let signer = Signer::new(&endpoint.connection.key);
    let mut halves = Vec::new();
    let mut tasks = Vec::new();
    for channel in [Channel::Shell, Channel::Control, Channel::Stdin] {
        let socket = dealer(&endpoint.connection, channel, &identity).await?;
        let (send, mut recv) = socket.split();
        let tx = replies.clone();
        let signer = signer.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(frames) = recv.recv().await {
                match RawMessage::from_frames(frames.into_vec(), &signer) {
                    Ok(m) => {
                        if tx.send((channel, m)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(channel = channel.as_str(), error = %e, "dropped a reply")
                    }
                }
            }
        }));
        halves.push(send);
    }
    let stdin = halves.pop().expect("three halves");
    let control = halves.pop().expect("three halves");
    let shell = halves.pop().expect("three halves");
    Ok(Dealers {
        shell,
        control,
        stdin,
        tasks,
        signer,
    })
}

/// Serves one websocket until either side closes.
/// The subprotocol of jupyter_server's binary framing.
pub const V1: &str = "v1.kernel.websocket.jupyter.org";

/// Encodes an outgoing message in the socket's protocol.
fn encode(msg: &RawMessage, channel: Channel, v1: bool) -> Message {
    if v1 {
        Message::Binary(msg.to_v1(channel).into())
    } else {
        Message::Text(msg.to_legacy_json(channel).into())
    }
}

/// Serves one websocket until either side closes. `v1` when the client
/// chose the binary subprotocol.
pub async fn serve(socket: WebSocket, kernel: Arc<Kernel>, v1: bool, metrics: Arc<Metrics>) {
    kernel.connection_opened();
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (reply_tx, mut reply_rx) = mpsc::channel::<(Channel, RawMessage)>(256);
    let mut iopub = kernel.subscribe();
    let mut endpoint = kernel.endpoint();
    endpoint.borrow_and_update();
    let mut dealers = match open_dealers(&kernel, &reply_tx).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(kernel_id = %kernel.id, error = %e, "cannot reach the kernel");
            let _ = ws_tx
                .send(close_frame(close::KERNEL_GONE, "kernel unreachable"))
                .await;
            kernel.connection_closed();
            return;
        }
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut heard = tokio::time::Instant::now();
    let closing: Option<Message> = loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() > PING_EVERY * 3 {
                    break Some(close_frame(close::POLICY, "no pong: connection presumed dead"));
                }
                if ws_tx.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            incoming = ws_rx.next() => {
                heard = tokio::time::Instant::now();
                let parsed = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(Message::Text(t))) => {
                        if t.len() > MAX_FRAME {
                            break Some(close_frame(close::TOO_BIG, "frame too large"));
                        }
                        RawMessage::from_legacy_json(t.as_str())
                    }
                    Some(Ok(Message::Binary(b))) if v1 => {
                        if b.len() > MAX_FRAME {
                            break Some(close_frame(close::TOO_BIG, "frame too large"));
                        }
                        RawMessage::from_v1(&b)
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break Some(close_frame(close::UNSUPPORTED, "binary frames need the v1.kernel.websocket.jupyter.org subprotocol"));
                    }
                    Some(Ok(_)) => continue,
                };
                let (channel, msg) = match parsed {
                    Ok(x) => x,
                    Err(WireError::UnknownChannel(c)) => {
                        break Some(close_frame(close::POLICY, &format!("unknown channel {c:?}")));
                    }
                    Err(e) => break Some(close_frame(close::INVALID_PAYLOAD, &format!("malformed message: {e}"))),
                };
                kernel.touch();
                metrics.relayed(&TO_KERNEL, msg.header.len() + msg.content.len());
                let frames = match zeromq::ZmqMessage::try_from(msg.to_frames(&dealers.signer)) {
                    Ok(f) => f,
                    Err(_) => continue,
                };
                let sent = match channel {
                    Channel::Shell => dealers.shell.send(frames).await,
                    Channel::Control => dealers.control.send(frames).await,
                    Channel::Stdin => dealers.stdin.send(frames).await,
                    Channel::Iopub => break Some(close_frame(close::POLICY, "clients cannot send on iopub")),
                };
                if let Err(e) = sent {
                    tracing::warn!(kernel_id = %kernel.id, error = %e, "send to kernel failed");
                }
            }
            Some((channel, msg)) = reply_rx.recv() => {
                metrics.relayed(&TO_CLIENT, msg.header.len() + msg.content.len());
                if ws_tx.send(encode(&msg, channel, v1)).await.is_err() {
                    break None;
                }
            }
            event = iopub.recv() => {
                match event {
                    Ok(msg) => {
                        metrics.relayed(&TO_CLIENT, msg.header.len() + msg.content.len());
                        if ws_tx.send(encode(&msg, Channel::Iopub, v1)).await.is_err() {
                            break None;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(kernel_id = %kernel.id, dropped = n, "a slow client missed iopub messages");
                    }
                    Err(broadcast::error::RecvError::Closed) => break Some(close_frame(close::KERNEL_GONE, "kernel shut down")),
                }
            }
            changed = endpoint.changed() => {
                if changed.is_err() {
                    break Some(close_frame(close::KERNEL_GONE, "kernel shut down"));
                }
                // The kernel restarted on new ports: reconnect our sockets.
                drop(dealers);
                dealers = match open_dealers(&kernel, &reply_tx).await {
                    Ok(d) => d,
                    Err(_) => break Some(close_frame(close::RESTART, "kernel restarted; reconnect")),
                };
            }
        }
    };
    if let Some(frame) = closing {
        let _ = ws_tx.send(frame).await;
    }
    kernel.connection_closed();
}
