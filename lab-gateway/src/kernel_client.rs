//! The gateway's ZeroMQ sockets to kernels, each with a ceiling on what it reads.
//!
//! A kernel runs its user's code, so anything it sends is untrusted: it (or a
//! process that took over one of its ports) can announce a frame of any
//! length. Every socket the gateway opens to a kernel is made here, with
//! zeromq's `max_message_size` set (our patch, `third_party/zeromq`): the
//! length a frame declares is checked before anything is allocated, an
//! oversized message is skipped as its bytes arrive, and `recv` reports it as
//! an error that [`oversized`] recognises. The connection stays up, so the
//! kernel's later messages still arrive.

use std::time::Duration;

use jupyter_protocol::{ConnectionInfo, JupyterMessageContent};
use zeromq::{Socket, SocketRecv, SocketSend, ZmqError};

use crate::wire::{Channel, RawMessage, Signer};

const MIB: usize = 1024 * 1024;

pub use crate::config::MessageLimits;

/// The ceiling on replies to the gateway's own requests (kernel_info,
/// interrupt, shutdown): all of them are small.
pub const GATEWAY_REPLY_LIMIT: usize = MIB;

fn options(max_message: usize) -> zeromq::SocketOptions {
    let mut options = zeromq::SocketOptions::default();
    options.max_message_size(max_message);
    options
}

/// A DEALER socket to one of a kernel's request channels, with its own identity.
pub async fn dealer(
    conn: &ConnectionInfo,
    channel: Channel,
    identity: &[u8],
    max_message: usize,
) -> Result<zeromq::DealerSocket, ZmqError> {
    let url = match channel {
        Channel::Shell => conn.shell_url(),
        Channel::Control => conn.control_url(),
        Channel::Stdin => conn.stdin_url(),
        Channel::Iopub => conn.iopub_url(),
    };
    let mut options = options(max_message);
    if let Ok(id) = zeromq::util::PeerIdentity::try_from(identity.to_vec()) {
        options.peer_identity(id);
    }
    let mut socket = zeromq::DealerSocket::with_options(options);
    socket.connect(&url).await?;
    Ok(socket)
}

/// A SUB socket on a kernel's iopub, subscribed to everything. The kernel may
/// not have bound yet, so it retries until the connection is made.
pub async fn subscriber(url: &str, max_message: usize) -> Result<zeromq::SubSocket, ZmqError> {
    let mut sub = loop {
        let mut sub = zeromq::SubSocket::with_options(options(max_message));
        let connected = tokio::time::timeout(Duration::from_secs(1), sub.connect(url)).await;
        if matches!(connected, Ok(Ok(()))) {
            break sub;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sub.subscribe("").await?;
    Ok(sub)
}

/// The heartbeat's echoes are a few bytes.
const HEARTBEAT_LIMIT: usize = 4096;

/// A REQ socket on a kernel's heartbeat channel (see [`ping`]).
pub async fn heartbeat(conn: &ConnectionInfo) -> Result<zeromq::ReqSocket, ZmqError> {
    let mut socket = zeromq::ReqSocket::with_options(options(HEARTBEAT_LIMIT));
    socket.connect(&conn.hb_url()).await?;
    Ok(socket)
}

/// One heartbeat: a ping, and the kernel's echo. After an error or a
/// timeout the socket is out of step: make a new one.
pub async fn ping(socket: &mut zeromq::ReqSocket) -> Result<(), ZmqError> {
    use zeromq::{SocketRecv, SocketSend};
    socket
        .send(zeromq::ZmqMessage::from(b"ping".to_vec()))
        .await?;
    socket.recv().await?;
    Ok(())
}

/// A message that was over its socket's limit: the size its frames declared
/// and the limit. It was skipped, not buffered; the socket is still usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    pub size: u64,
    pub limit: usize,
}

impl Oversized {
    /// What the kernel's clients are told, on stderr.
    pub fn notice(&self, channel: Channel) -> String {
        format!(
            "[lab gateway] the kernel sent a {} message of {} bytes, over the limit of {} bytes: it was dropped\n",
            channel.as_str(),
            self.size,
            self.limit
        )
    }
}

/// Whether a `recv` error is an oversized message that was skipped.
pub fn oversized(error: &ZmqError) -> Option<Oversized> {
    match error {
        ZmqError::Codec(zeromq::CodecError::MessageTooLarge { size, limit }) => Some(Oversized {
            size: *size,
            limit: *limit,
        }),
        _ => None,
    }
}

/// Sends one of the gateway's own requests on a fresh DEALER and waits for
/// its reply; `None` when none came within `timeout`.
pub async fn request(
    conn: &ConnectionInfo,
    channel: Channel,
    content: impl Into<JupyterMessageContent>,
    timeout: Duration,
) -> Option<RawMessage> {
    let msg = RawMessage::request(content);
    let signer = Signer::new(&conn.key);
    let msg_id = msg.ids().0.to_owned();
    let identity = format!("lab-gateway-{}", uuid::Uuid::new_v4());
    let mut socket = tokio::time::timeout(
        timeout,
        dealer(conn, channel, identity.as_bytes(), GATEWAY_REPLY_LIMIT),
    )
    .await
    .ok()?
    .ok()?;
    let frames = zeromq::ZmqMessage::try_from(msg.to_frames(&signer)).ok()?;
    socket.send(frames).await.ok()?;
    tokio::time::timeout(timeout, async {
        loop {
            let reply = match socket.recv().await {
                Ok(reply) => reply,
                // Skipped; the reply may still come.
                Err(e) if oversized(&e).is_some() => continue,
                Err(_) => return None,
            };
            if let Ok(m) = RawMessage::from_frames(reply.into_vec(), &signer)
                && m.parent_msg_id().as_deref() == Some(msg_id.as_str())
            {
                return Some(m);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// ZMTP 3.0 greeting (NULL mechanism) and a READY command for `socket_type`.
    fn handshake(socket_type: &str) -> (Vec<u8>, Vec<u8>) {
        let mut greeting = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0];
        let mut mechanism = b"NULL".to_vec();
        mechanism.resize(20, 0);
        greeting.extend(mechanism);
        greeting.push(0);
        greeting.resize(64, 0);
        let mut body = vec![5];
        body.extend(b"READY");
        body.push(11);
        body.extend(b"Socket-Type");
        body.extend((socket_type.len() as u32).to_be_bytes());
        body.extend(socket_type.as_bytes());
        let mut ready = vec![0x04, body.len() as u8];
        ready.extend(body);
        (greeting, ready)
    }

    /// A hostile peer: a ROUTER-speaking TCP server that, once a DEALER has
    /// connected, announces a frame of 2^62 bytes, then sends a small message
    /// with a length that is honest but over the limit, then a good one.
    #[tokio::test]
    async fn a_frame_announcing_exabytes_is_skipped_and_the_socket_lives_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let (greeting, ready) = handshake("ROUTER");
            tcp.write_all(&greeting).await.unwrap();
            let mut peer = [0u8; 64];
            tcp.read_exact(&mut peer).await.unwrap();
            tcp.write_all(&ready).await.unwrap();
            // Over the limit honestly: 2 frames of 600 bytes against 1000.
            for more in [1u8, 0] {
                tcp.write_all(&[0x02 | more]).await.unwrap();
                tcp.write_all(&600u64.to_be_bytes()).await.unwrap();
                tcp.write_all(&[b'x'; 600]).await.unwrap();
            }
            // Within the limit.
            tcp.write_all(&[0x00, 5]).await.unwrap();
            tcp.write_all(b"hello").await.unwrap();
            // A long frame announcing 2^62 bytes, then a few of them.
            tcp.write_all(&[0x02]).await.unwrap();
            tcp.write_all(&(1u64 << 62).to_be_bytes()).await.unwrap();
            tcp.write_all(&[0u8; 4096]).await.unwrap();
            tcp.flush().await.unwrap();
            // Keep the connection open while the client reads.
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest).await;
        });
        let conn: ConnectionInfo = serde_json::from_value(serde_json::json!({
            "ip": "127.0.0.1", "transport": "tcp", "shell_port": port, "iopub_port": port,
            "stdin_port": port, "control_port": port, "hb_port": port,
            "key": "", "signature_scheme": "hmac-sha256", "kernel_name": "hostile",
        }))
        .unwrap();
        let mut socket = dealer(&conn, Channel::Shell, b"gateway", 1000)
            .await
            .unwrap();
        let within = Duration::from_secs(10);
        let first = tokio::time::timeout(within, socket.recv()).await.unwrap();
        let err = first.unwrap_err();
        assert_eq!(
            oversized(&err),
            // Two frames of 600 bytes, and 64 for each frame's bookkeeping.
            Some(Oversized {
                size: 1328,
                limit: 1000
            }),
            "{err}"
        );
        let second = tokio::time::timeout(within, socket.recv()).await.unwrap();
        assert_eq!(second.unwrap().into_vec()[0].as_ref(), b"hello");
        // The 2^62-byte frame is being skipped: nothing arrives, nothing is
        // allocated for it, and the process is still here to say so.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), socket.recv())
                .await
                .is_err()
        );
        server.abort();
    }
}
