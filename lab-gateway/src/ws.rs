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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use zeromq::{SocketRecv, SocketSend};

use crate::kernel_client::{self, dealer};
use crate::kernels::Kernel;
use crate::metrics::{Metrics, TO_CLIENT, TO_KERNEL};
use crate::replay::{Budget, Evict, TooManySessions};
use crate::wire::{Channel, RawMessage, Signer, WireError};

/// How often the gateway pings an idle client; three missed periods close it.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// Largest frame a client may send (messages carry code, not data).
pub const MAX_FRAME: usize = 16 << 20;
/// How far over `MAX_FRAME` the transport still reads a frame, to answer it
/// with a reason; beyond, it is refused from its header.
pub const FRAME_SLACK: usize = 1 << 20;
/// Each websocket's read buffer: what an idle connection costs in memory.
pub const READ_BUFFER: usize = 8 << 10;
/// The subprotocol of jupyter_server's binary framing.
pub const V1: &str = "v1.kernel.websocket.jupyter.org";
/// Messages kept per session for a client that is away.
const BUFFER_MESSAGES: usize = 20_000;
/// Bytes kept per session for a client that is away.
const BUFFER_BYTES: usize = 64 << 20;
/// Already-sent messages kept so `resume_after` can look back.
const RESUME_WINDOW: usize = 2_000;
/// A session with no websocket for this long is dropped.
const SESSION_GRACE: Duration = Duration::from_secs(120);

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

fn size_of(m: &RawMessage) -> usize {
    m.header.len()
        + m.parent_header.len()
        + m.metadata.len()
        + m.content.len()
        + m.buffers.iter().map(|b| b.len()).sum::<usize>()
}

#[derive(Default)]
struct Buffer {
    items: VecDeque<(u64, Channel, Arc<RawMessage>)>,
    bytes: usize,
    next_seq: u64,
    /// Everything below this was sent to some websocket.
    delivered: u64,
    /// Messages dropped because the buffer was full, not yet reported.
    dropped: u64,
    /// The parent header of the last dropped message, so the notice lands in that cell.
    dropped_parent: Option<bytes::Bytes>,
}

impl Buffer {
    fn push(&mut self, channel: Channel, msg: Arc<RawMessage>) {
        self.bytes += size_of(&msg);
        self.items.push_back((self.next_seq, channel, msg));
        self.next_seq += 1;
        // Forget what was sent long ago, then, if still too big, drop the oldest unsent.
        while self.items.len() > RESUME_WINDOW
            && self
                .items
                .front()
                .is_some_and(|(s, _, _)| *s + (RESUME_WINDOW as u64) < self.delivered)
        {
            self.pop_front();
        }
        while self.items.len() > BUFFER_MESSAGES || self.bytes > BUFFER_BYTES {
            if let Some((seq, _, _)) = self.pop_front()
                && seq >= self.delivered
            {
                self.dropped += 1;
                self.delivered = seq + 1;
            }
        }
    }

    fn pop_front(&mut self) -> Option<(u64, Channel, Arc<RawMessage>)> {
        let item = self.items.pop_front()?;
        self.bytes -= size_of(&item.2);
        Some(item)
    }

    fn seq_after(&self, msg_id: &str) -> Option<u64> {
        self.items
            .iter()
            .find(|(_, _, m)| m.ids().0 == msg_id)
            .map(|(s, _, _)| s + 1)
    }
}

/// The buffer of one session_id on one kernel.
pub struct ChannelSession {
    buffer: std::sync::Mutex<Buffer>,
    notify: Notify,
    /// Incremented by each websocket that attaches; the others see they were replaced.
    attachments: AtomicU64,
    attached: AtomicU64,
    pump: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The kernel's owner, whose share of the replay budget this buffer uses.
    user: String,
    budget: Arc<Budget>,
}

impl Drop for ChannelSession {
    fn drop(&mut self) {
        if let Some(p) = self.pump.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.abort();
        }
        let held = self.buffer.lock().unwrap_or_else(|e| e.into_inner()).bytes;
        self.budget.charge(&self.user, -(held as isize));
    }
}

impl Evict for ChannelSession {
    fn held(&self) -> usize {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// The oldest message goes; if no client had it yet, the cell is told
    /// (with the next message a client gets) that output was dropped.
    fn evict_oldest(&self) -> usize {
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let Some((seq, _, msg)) = b.pop_front() else {
            return 0;
        };
        if seq >= b.delivered {
            b.dropped += 1;
            b.delivered = seq + 1;
            b.dropped_parent = Some(msg.parent_header.clone());
        }
        size_of(&msg)
    }
}

/// Where replies go: the session that sent each request still in flight.
#[derive(Default)]
struct Routes {
    by_request: HashMap<String, (Weak<ChannelSession>, Instant)>,
    /// Prune when the table grows past this.
    prune_at: usize,
}

/// Requests outlive their sessions' websockets, not a day.
const ROUTE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Requests in flight one kernel routes replies for.
const MAX_ROUTES: usize = 65_536;

impl Routes {
    fn insert(&mut self, msg_id: String, session: Weak<ChannelSession>) {
        self.by_request.insert(msg_id, (session, Instant::now()));
        if self.by_request.len() > self.prune_at.max(4096) {
            // Requests of sessions that are gone, or so old no reply will come.
            self.by_request
                .retain(|_, (s, at)| s.strong_count() > 0 && at.elapsed() < ROUTE_MAX_AGE);
            // Still too many (a client sending requests the kernel never
            // answers): the oldest half goes.
            if self.by_request.len() > MAX_ROUTES {
                let mut ages: Vec<Instant> = self.by_request.values().map(|(_, at)| *at).collect();
                let mid = ages.len() / 2;
                let (_, cut, _) = ages.select_nth_unstable(mid);
                let cut = *cut;
                self.by_request.retain(|_, (_, at)| *at > cut);
            }
            self.prune_at = self.by_request.len() * 2;
        }
    }

    /// The session a kernel message answers: a `*_reply` ends its request's
    /// route; anything else (an `input_request`) leaves it for more.
    fn route(&mut self, msg: &RawMessage) -> Option<Arc<ChannelSession>> {
        let parent = msg.parent_msg_id()?;
        let (_, msg_type) = msg.ids();
        let session = if msg_type.ends_with("_reply") {
            self.by_request.remove(&parent)?.0
        } else {
            self.by_request.get(&parent)?.0.clone()
        };
        session.upgrade()
    }
}

/// A kernel's shared DEALERs for one generation of its process.
pub struct Mux {
    generation: u64,
    shell: tokio::sync::Mutex<zeromq::DealerSendHalf>,
    control: tokio::sync::Mutex<zeromq::DealerSendHalf>,
    stdin: tokio::sync::Mutex<zeromq::DealerSendHalf>,
    signer: Signer,
    routes: Arc<std::sync::Mutex<Routes>>,
    readers: Vec<tokio::task::AbortHandle>,
}

impl Drop for Mux {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

impl Mux {
    /// Connects the three DEALERs with a fresh identity and starts routing replies.
    async fn connect(kernel: &Arc<Kernel>) -> Result<Mux, zeromq::ZmqError> {
        let ep = kernel.endpoint().borrow().clone();
        let identity = uuid::Uuid::new_v4().as_bytes().to_vec();
        // All three connect before any reader starts, so a failure leaves nothing behind.
        let limits = kernel.message_limits();
        let shell = dealer(&ep.connection, Channel::Shell, &identity, limits.shell).await?;
        let control = dealer(&ep.connection, Channel::Control, &identity, limits.control).await?;
        let stdin = dealer(&ep.connection, Channel::Stdin, &identity, limits.stdin).await?;
        let signer = Signer::new(&ep.connection.key);
        let routes = Arc::new(std::sync::Mutex::new(Routes::default()));
        let mut readers = Vec::with_capacity(3);
        let mut route_replies = |ch: Channel, socket: zeromq::DealerSocket| {
            let (tx, mut rx) = socket.split();
            let routes = routes.clone();
            let signer = signer.clone();
            let kernel_id = kernel.id;
            let weak = Arc::downgrade(kernel);
            let reader = tokio::spawn(async move {
                loop {
                    let frames = match rx.recv().await {
                        Ok(frames) => frames,
                        Err(e) => match (kernel_client::oversized(&e), weak.upgrade()) {
                            // Skipped: the socket carries on.
                            (Some(what), Some(kernel)) => {
                                kernel.report_oversized(ch, what).await;
                                continue;
                            }
                            (Some(_), None) => continue,
                            (None, _) => break,
                        },
                    };
                    let msg = match RawMessage::from_frames(frames.into_vec(), &signer) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(%kernel_id, channel = ch.as_str(), error = %e, "dropped a reply");
                            continue;
                        }
                    };
                    let to = routes.lock().unwrap_or_else(|e| e.into_inner()).route(&msg);
                    match to {
                        Some(session) => session.push(ch, Arc::new(msg)),
                        None => {
                            tracing::debug!(%kernel_id, channel = ch.as_str(), "a reply nobody waits for")
                        }
                    }
                }
            });
            readers.push(reader.abort_handle());
            tokio::sync::Mutex::new(tx)
        };
        let shell = route_replies(Channel::Shell, shell);
        let control = route_replies(Channel::Control, control);
        let stdin = route_replies(Channel::Stdin, stdin);
        Ok(Mux {
            generation: ep.generation,
            shell,
            control,
            stdin,
            signer,
            routes,
            readers,
        })
    }

    /// Sends a client's message, remembering whom the answer is for.
    async fn send(
        &self,
        channel: Channel,
        msg: &RawMessage,
        from: &Arc<ChannelSession>,
    ) -> Result<(), zeromq::ZmqError> {
        let (msg_id, msg_type) = msg.ids();
        if msg_type.ends_with("_request") {
            self.routes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(msg_id.to_owned(), Arc::downgrade(from));
        }
        let Ok(frames) = zeromq::ZmqMessage::try_from(msg.to_frames(&self.signer)) else {
            return Ok(());
        };
        let socket = match channel {
            Channel::Shell => &self.shell,
            Channel::Control => &self.control,
            Channel::Stdin | Channel::Iopub => &self.stdin,
        };
        socket.lock().await.send(frames).await
    }
}

/// The kernel's mux for its current process, connected on first use and
/// again after a restart.
async fn mux_for(kernel: &Arc<Kernel>) -> Result<Arc<Mux>, zeromq::ZmqError> {
    let generation = kernel.endpoint().borrow().generation;
    let mut slot = kernel.mux.lock().await;
    if let Some(m) = slot.as_ref()
        && m.generation == generation
    {
        return Ok(m.clone());
    }
    let m = Arc::new(Mux::connect(kernel).await?);
    *slot = Some(m.clone());
    Ok(m)
}

impl ChannelSession {
    fn push(&self, channel: Channel, msg: Arc<RawMessage>) {
        let delta = {
            let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            let before = b.bytes as isize;
            b.push(channel, msg);
            b.bytes as isize - before
        };
        self.budget.charge(&self.user, delta);
        self.notify.notify_waiters();
    }

    /// Pumps the kernel's iopub fan-out into the buffer, within the rate limits.
    fn start(self: &Arc<Self>, kernel: Arc<Kernel>) {
        let session = Arc::downgrade(self);
        let mut limiter = RateLimiter::new(kernel.limits());
        let mut iopub = kernel.subscribe();
        drop(kernel);
        let task = tokio::spawn(async move {
            while let Some(m) = iopub.rx.recv().await {
                let Some(s) = session.upgrade() else { return };
                let lost = iopub.dropped.swap(0, Ordering::Relaxed);
                let admitted = limiter.admit(&m);
                if lost > 0 || !admitted {
                    let mut b = s.buffer.lock().unwrap_or_else(|e| e.into_inner());
                    b.dropped += lost + u64::from(!admitted);
                    b.dropped_parent = Some(m.parent_header.clone());
                }
                if admitted {
                    s.push(Channel::Iopub, m);
                } else {
                    s.notify.notify_waiters();
                }
            }
        });
        *self.pump.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
    }
}

/// iopub output limits per websocket session, like jupyter_server's
/// `iopub_msg_rate_limit` and `iopub_data_rate_limit`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub messages_per_second: f64,
    pub bytes_per_second: f64,
    /// The window the rates are averaged over.
    pub window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            messages_per_second: 10_000.0,
            bytes_per_second: 50e6,
            window: Duration::from_secs(3),
        }
    }
}

/// Counts output messages in a sliding window and refuses those over the rates.
/// Status messages and replies always pass: only output is ever dropped.
struct RateLimiter {
    limits: RateLimits,
    window_start: tokio::time::Instant,
    messages: f64,
    bytes: f64,
}

impl RateLimiter {
    fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            window_start: tokio::time::Instant::now(),
            messages: 0.0,
            bytes: 0.0,
        }
    }

    fn admit(&mut self, m: &RawMessage) -> bool {
        let (_, msg_type) = m.ids();
        if !matches!(
            msg_type,
            "stream" | "display_data" | "update_display_data" | "execute_result" | "error"
        ) {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window_start) > self.limits.window {
            self.window_start = now;
            self.messages = 0.0;
            self.bytes = 0.0;
        }
        let secs = self.limits.window.as_secs_f64();
        let size = size_of(m) as f64;
        if self.messages + 1.0 > self.limits.messages_per_second * secs
            || self.bytes + size > self.limits.bytes_per_second * secs
        {
            return false;
        }
        self.messages += 1.0;
        self.bytes += size;
        true
    }
}

/// Finds or creates the channel session for `session_id` on `kernel`; a new
/// one only while the kernel's owner is within their sessions (`replay`).
pub fn session_for(
    kernel: &Arc<Kernel>,
    session_id: &str,
    budget: &Arc<Budget>,
) -> Result<Arc<ChannelSession>, TooManySessions> {
    let mut sessions = kernel
        .channel_sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(s) = sessions.get(session_id) {
        return Ok(s.clone());
    }
    let user = kernel.owner();
    let s = Arc::new(ChannelSession {
        buffer: Default::default(),
        notify: Notify::new(),
        attachments: AtomicU64::new(0),
        attached: AtomicU64::new(0),
        pump: Default::default(),
        user: user.clone(),
        budget: budget.clone(),
    });
    let weak: Weak<dyn Evict> = Arc::downgrade(&s) as Weak<dyn Evict>;
    budget.register(&user, weak)?;
    s.start(kernel.clone());
    sessions.insert(session_id.to_owned(), s.clone());
    // Also when its websocket never comes (the upgrade failed): a session
    // nobody attaches to does not stay, nor count against its user.
    let_go_unless_attached(kernel.clone(), session_id.to_owned());
    Ok(s)
}

/// Serves one websocket until either side closes.
pub async fn serve(
    socket: WebSocket,
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
        let b = session.buffer.lock().unwrap_or_else(|e| e.into_inner());
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
        // Send everything buffered past our cursor.
        loop {
            if session.attachments.load(Ordering::SeqCst) != me {
                break 'outer Some(close_frame(
                    close::REPLACED,
                    "replaced by a newer connection with the same session_id",
                ));
            }
            let (next, dropped) = {
                let mut b = session.buffer.lock().unwrap_or_else(|e| e.into_inner());
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
                let notice = RawMessage::request(
                    "stream",
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
                break;
            };
            metrics.relayed(&TO_CLIENT, size_of(&msg));
            if ws_tx.send(encode(&msg, channel, v1)).await.is_err() {
                break 'outer None;
            }
            cursor = seq + 1;
            let mut b = session.buffer.lock().unwrap_or_else(|e| e.into_inner());
            b.delivered = b.delivered.max(cursor);
        }
        let notified = session.notify.notified();
        tokio::select! {
            _ = notified => {}
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
                let mux = match mux_for(&kernel).await {
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
        let_go_unless_attached(kernel.clone(), session_id);
    }
}

/// Drops the session after `SESSION_GRACE` if no websocket is attached then.
fn let_go_unless_attached(kernel: Arc<Kernel>, session_id: String) {
    tokio::spawn(async move {
        tokio::time::sleep(SESSION_GRACE).await;
        let mut sessions = kernel
            .channel_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get(&session_id)
            && s.attached.load(Ordering::SeqCst) == 0
        {
            sessions.remove(&session_id);
        }
    });
}

/// Whether a websocket read failed because the frame exceeds our limit.
fn is_too_big(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<Error>())
        .is_some_and(|e| matches!(e, Error::Capacity(_)))
}
