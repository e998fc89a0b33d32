//! A kernel's shared DEALERs (shell, control, stdin), and the routing of
//! each reply to the session that sent the request.
//!
//! One set of DEALERs per kernel process, with one ZeroMQ identity that no
//! other connection shares, so the kernel's ROUTER can never pick a stale
//! socket. Each reply, and each `input_request` of an execute, goes back to
//! the session that sent the request, by parent msg_id.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use zeromq::{SocketRecv, SocketSend};

use super::session::ChannelSession;
use crate::kernel_client::{self, dealer};
use crate::kernels::Kernel;
use crate::wire::{Channel, RawMessage, Signer};

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
    pub(super) generation: u64,
    shell: tokio::sync::Mutex<zeromq::DealerSendHalf>,
    control: tokio::sync::Mutex<zeromq::DealerSendHalf>,
    stdin: tokio::sync::Mutex<zeromq::DealerSendHalf>,
    signer: Signer,
    routes: Arc<parking_lot::Mutex<Routes>>,
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
    pub(super) async fn connect(kernel: &Arc<Kernel>) -> Result<Mux, zeromq::ZmqError> {
        let ep = kernel.endpoint().borrow().clone();
        let identity = uuid::Uuid::new_v4().as_bytes().to_vec();
        // All three connect before any reader starts, so a failure leaves nothing behind.
        let limits = kernel.message_limits();
        let shell = dealer(&ep.connection, Channel::Shell, &identity, limits.shell).await?;
        let control = dealer(&ep.connection, Channel::Control, &identity, limits.control).await?;
        let stdin = dealer(&ep.connection, Channel::Stdin, &identity, limits.stdin).await?;
        let signer = Signer::new(&ep.connection.key);
        let routes = Arc::new(parking_lot::Mutex::new(Routes::default()));
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
                    let to = routes.lock().route(&msg);
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
    pub(super) async fn send(
        &self,
        channel: Channel,
        msg: &RawMessage,
        from: &Arc<ChannelSession>,
    ) -> Result<(), zeromq::ZmqError> {
        let (msg_id, msg_type) = msg.ids();
        if msg_type.ends_with("_request") {
            self.routes
                .lock()
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
