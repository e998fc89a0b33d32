//! The websocket bridge: `/api/kernels/{id}/channels?session_id=…`.
//!
//! A websocket attaches to a *channel session*, keyed by its `session_id`,
//! which outlives it: the session keeps buffering its replies and the
//! kernel's iopub messages, numbered, in a bounded buffer, whether or not a
//! websocket is attached.
//!
//! Requests reach the kernel through its [`Mux`]: one set of DEALERs (shell,
//! control, stdin) per kernel, with one ZeroMQ identity that no other
//! connection shares, so the kernel's ROUTER can never pick a stale socket.
//! Each reply, and each `input_request` of an execute, goes back to the
//! session that sent the request, by parent msg_id. A websocket therefore
//! costs one file descriptor, not four. A reconnect with the same session_id replaces the
//! stale websocket and resumes from what was last sent, or, exactly, from
//! after the message named by `resume_after=<msg_id>`. A session nobody
//! attaches to for two minutes is dropped.
//!
//! Frames use the legacy JSON protocol, or `v1.kernel.websocket.jupyter.org`
//! when the client offers it. A bad frame closes the socket with a code that
//! says why; other clients of the kernel are unaffected.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};

use crate::kernels::Kernel;
use crate::metrics::{Metrics, TO_CLIENT, TO_KERNEL};
use crate::wire::{Channel, RawMessage, WireError};

mod buffer;
mod channels;
mod mux;
mod rate;
mod session;

pub use channels::Channels;
pub use rate::RateLimits;
pub use session::ChannelSession;

/// How often the gateway pings an idle client; three missed periods close it.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// Largest frame a client may send (messages carry code, not data).
pub const MAX_FRAME: usize = 16 << 20;
/// How far over `MAX_FRAME` the transport still reads a frame, to answer it
/// with a reason; beyond, it is refused from its header.
pub const FRAME_SLACK: usize = 1 << 20;
/// Each websocket's read buffer: what an idle connection costs in memory.
pub const READ_BUFFER: usize = 8 << 10;
/// Messages queued on a socket between flushes in a burst.
const FLUSH_EVERY: usize = 256;
/// The subprotocol of jupyter_server's binary framing.
pub const V1: &str = "v1.kernel.websocket.jupyter.org";

/// Close codes (RFC 6455 and the private range).
pub mod close {
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const REPLACED: u16 = 4001;
    pub const KERNEL_GONE: u16 = 4004;
}

/// A close frame; its reason is cut to the 123 bytes a control frame holds
/// (it may quote what a client sent).
fn close_frame(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    }))
}

/// Encodes an outgoing message in the socket's protocol.
fn encode(msg: &RawMessage, channel: Channel, v1: bool) -> Message {
    if v1 {
        Message::Binary(msg.to_v1(channel).into())
    } else {
        Message::Text(msg.to_legacy_json(channel).into())
    }
}

pub(crate) fn size_of(m: &RawMessage) -> usize {
    m.header.len()
        + m.parent_header.len()
        + m.metadata.len()
        + m.content.len()
        + m.buffers.iter().map(|b| b.len()).sum::<usize>()
}

/// Serves one websocket until either side closes.
pub async fn serve(
    socket: WebSocket,
    channels: Arc<Channels>,
    kernel: Arc<Kernel>,
    (session_id, session): (String, Arc<ChannelSession>),
    resume_after: Option<String>,
    v1: bool,
    metrics: Arc<Metrics>,
) {
    kernel.connection_opened();
    let me = session.attachments.fetch_add(1, Ordering::SeqCst) + 1;
    session.attached.fetch_add(1, Ordering::SeqCst);
    session.notify.notify_waiters(); // tells a stale websocket it was replaced
    let mut cursor = {
        let b = session.buffer.lock();
        resume_after
            .as_deref()
            .and_then(|id| b.seq_after(id))
            .unwrap_or(b.delivered)
    };
    let (mut ws_tx, mut ws_rx) = socket.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut heard = tokio::time::Instant::now();
    let closing: Option<Message> = 'outer: loop {
        // Registered before the buffer is read, so a message pushed while we
        // send (or flush) still wakes us: `notify_waiters` only wakes
        // futures already enabled.
        let notified = session.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Send everything buffered past our cursor.
        let mut fed = 0usize;
        loop {
            if session.attachments.load(Ordering::SeqCst) != me {
                break 'outer Some(close_frame(
                    close::REPLACED,
                    "replaced by a newer connection with the same session_id",
                ));
            }
            let (next, dropped) = {
                let mut b = session.buffer.lock();
                let dropped = std::mem::take(&mut b.dropped);
                let dropped_parent = b.dropped_parent.take();
                if let Some((first, _, _)) = b.items.front()
                    && cursor < *first
                {
                    cursor = *first;
                }
                // Sequence numbers are contiguous, so the cursor indexes the buffer.
                let next = b
                    .items
                    .front()
                    .and_then(|(first, _, _)| b.items.get(cursor.saturating_sub(*first) as usize))
                    .cloned();
                (next, (dropped, dropped_parent))
            };
            let (dropped, dropped_parent) = dropped;
            if dropped > 0 {
                tracing::warn!(kernel_id = %kernel.id, dropped, "a client missed messages");
                let notice = RawMessage::new_in_session(
                    "stream",
                    "lab-gateway",
                    serde_json::json!({"name": "stderr", "text": format!("[lab gateway] IOPub output rate exceeded: {dropped} output messages were dropped (limits: messages/s and bytes/s per client, and what is kept for a client that is away)\n")}),
                );
                let mut notice = notice;
                if let Some(parent) = dropped_parent {
                    notice.parent_header = parent;
                }
                if ws_tx
                    .send(encode(&notice, Channel::Iopub, v1))
                    .await
                    .is_err()
                {
                    break 'outer None;
                }
            }
            let Some((seq, channel, msg)) = next else {
                // Everything buffered is queued on the socket: one write for the lot.
                if ws_tx.flush().await.is_err() {
                    break 'outer None;
                }
                let mut b = session.buffer.lock();
                b.delivered = b.delivered.max(cursor);
                break;
            };
            metrics.relayed(&TO_CLIENT, size_of(&msg));
            // Queued, not flushed: a burst of output goes out in a few large
            // writes, and the flush above ends the burst, so a lone message
            // waits for none. A message counts as delivered only once
            // flushed, so a socket that fails mid-burst loses nothing a
            // resuming client would not be sent again.
            if ws_tx.feed(encode(&msg, channel, v1)).await.is_err() {
                break 'outer None;
            }
            cursor = seq + 1;
            fed += 1;
            if fed.is_multiple_of(FLUSH_EVERY) {
                if ws_tx.flush().await.is_err() {
                    break 'outer None;
                }
                let mut b = session.buffer.lock();
                b.delivered = b.delivered.max(cursor);
            }
        }
        tokio::select! {
            _ = &mut notified => {}
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
                    // The transport refuses a frame over MAX_FRAME +
                    // FRAME_SLACK from its header, without holding its payload.
                    Some(Err(e)) if is_too_big(&e) => {
                        break Some(close_frame(close::TOO_BIG, "frame too large"));
                    }
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
                if channel == Channel::Iopub {
                    break Some(close_frame(close::POLICY, "clients cannot send on iopub"));
                }
                let msg_type = msg.ids().1;
                if !channel.accepts_from_client(msg_type) {
                    let why = format!("a client cannot send {msg_type:?} on {}", channel.as_str());
                    break Some(close_frame(close::POLICY, &why));
                }
                kernel.touch();
                metrics.relayed(&TO_KERNEL, size_of(&msg));
                let mux = match channels.mux_for(&kernel).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(kernel_id = %kernel.id, error = %e, "cannot reach the kernel");
                        break Some(close_frame(close::KERNEL_GONE, "kernel unreachable"));
                    }
                };
                if let Err(e) = mux.send(channel, &msg, &session).await {
                    tracing::warn!(kernel_id = %kernel.id, error = %e, "send to kernel failed");
                }
            }
        }
    };
    if let Some(frame) = closing {
        let _ = ws_tx.send(frame).await;
    }
    kernel.connection_closed();
    if session.attached.fetch_sub(1, Ordering::SeqCst) == 1 {
        // Nobody attached: keep buffering for a while, then let go.
        channels.let_go_unless_attached(kernel.id, session_id);
    }
}

/// Whether a websocket read failed because the frame exceeds our limit.
fn is_too_big(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<Error>())
        .is_some_and(|e| matches!(e, Error::Capacity(_)))
}
