//! The Jupyter protocol loop of one kernel process.
//!
//! Five channels, each served by its own task:
//! - shell: requests handled one at a time, in order, wrapped in busy/idle;
//! - control: `kernel_info`, `interrupt` and `shutdown`, served even while a
//!   cell runs (that is what makes interrupt work);
//! - iopub: a single task owns the PUB socket and drains a bounded queue;
//! - heartbeat: echoes;
//! - with an orphan window (`ACADEMY_ORPHAN_TIMEOUT`, set by the gateway): a
//!   watchdog that ends the kernel when no heartbeat ping and no request has
//!   come for that long, so a kernel whose gateway is gone frees its memory
//!   and GPU instead of running forever;
//! - stdin: bound so clients can connect; cells that ask for input get none.
//!
//! A message whose HMAC does not verify, or that cannot be parsed, is logged
//! and dropped: it is never executed and it gets no reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jupyter_protocol::{
    CodeMirrorMode, CommClose, CommInfoReply, CompleteReply, ConnectionInfo, ErrorOutput,
    ExecuteInput, ExecuteReply, ExecuteRequest, ExecuteResult, ExecutionCount, HelpLink,
    HistoryEntry, HistoryReply, HistoryRequest, InspectReply, InterruptReply, IsCompleteReply,
    IsCompleteReplyStatus, JupyterMessage, JupyterMessageContent, KernelInfoReply, LanguageInfo,
    ReplyError, ReplyStatus, ShutdownReply, Status, Transient,
};
use jupyter_zmq_client::RuntimeError;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::KernelError;
use crate::engine::{CellError, Completeness, LanguageSpec, Output};
use crate::executor::{Executor, Starting};

/// How many iopub messages may wait for the socket before a printing cell
/// is made to wait.
const IOPUB_QUEUE: usize = 1024;

/// Everything the protocol loop needs to serve one kernel.
pub struct KernelServer {
    pub connection: ConnectionInfo,
    pub spec: LanguageSpec,
    /// Appended to the banner: which device this kernel computes on.
    pub device_line: String,
    /// The engine: academy-candle's builds while the sockets bind.
    pub executor: Starting,
    /// Ends the kernel after this long without a heartbeat ping or a
    /// request (its gateway is gone); `None` serves until shutdown.
    pub orphan_timeout: Option<Duration>,
    /// Called once, when all five sockets listen (the launch channel's
    /// report to the gateway).
    pub on_listening: Option<Box<dyn FnOnce() + Send>>,
}

/// When the kernel last heard from a client (a heartbeat ping or a valid
/// request), for the orphan watchdog.
#[derive(Clone)]
struct Contact {
    since: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Contact {
    fn new() -> Self {
        Contact {
            since: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        self.since
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Ends the kernel once it has heard from no one for `window`.
async fn watch_for_orphaning(
    window: Duration,
    contact: Contact,
    interrupter: Arc<dyn crate::engine::Interrupter>,
    shutdown: mpsc::Sender<()>,
) {
    loop {
        let silent = contact.silent_for();
        if silent >= window {
            warn!(
                silent_s = silent.as_secs_f64(),
                "no heartbeat or request for the orphan window: the gateway is gone, exiting"
            );
            interrupter.interrupt();
            let _ = shutdown.send(()).await;
            return;
        }
        tokio::time::sleep(window - silent).await;
    }
}

/// Serves the kernel until a `shutdown_request` arrives.
pub async fn run(server: KernelServer) -> Result<(), KernelError> {
    let KernelServer {
        connection,
        spec,
        device_line,
        executor,
        orphan_timeout,
        on_listening,
    } = server;
    let contact = Contact::new();
    let session_id = uuid::Uuid::new_v4().to_string();
    let channel = |channel: &'static str| move |source| KernelError::Channel { channel, source };

    let iopub = jupyter_zmq_client::create_kernel_iopub_connection(&connection, &session_id)
        .await
        .map_err(channel("iopub"))?;
    let shell = jupyter_zmq_client::create_kernel_shell_connection(&connection, &session_id)
        .await
        .map_err(channel("shell"))?;
    let control = jupyter_zmq_client::create_kernel_control_connection(&connection, &session_id)
        .await
        .map_err(channel("control"))?;
    let _stdin = jupyter_zmq_client::create_kernel_stdin_connection(&connection, &session_id)
        .await
        .map_err(channel("stdin"))?;
    let heartbeat = jupyter_zmq_client::create_kernel_heartbeat_connection(&connection)
        .await
        .map_err(channel("heartbeat"))?;
    let executor = executor
        .ready()
        .await
        .map_err(|e| KernelError::EngineStart(spec.language, e))?;
    if let Some(said) = on_listening {
        said();
    }

    let (iopub_tx, iopub_rx) = mpsc::channel(IOPUB_QUEUE);
    let iopub_task = tokio::spawn(pump_iopub(iopub, iopub_rx));
    tokio::spawn(serve_heartbeat(heartbeat, contact.clone()));

    let info = Arc::new(kernel_info(&spec, &device_line));
    let _ = iopub_tx
        .send(JupyterMessage::new(
            Status {
                execution_state: jupyter_protocol::ExecutionState::Starting,
            },
            None,
        ))
        .await;

    let (shutdown_tx, mut shutdown_rx) = mpsc::channel::<()>(1);
    let shell_task = tokio::spawn(serve_shell(
        shell,
        Shell {
            executor: executor.clone(),
            iopub: iopub_tx.clone(),
            info: info.clone(),
            execution_count: 0,
            history: Vec::new(),
            shutdown: shutdown_tx.clone(),
            contact: contact.clone(),
        },
    ));
    if let Some(window) = orphan_timeout {
        tokio::spawn(watch_for_orphaning(
            window,
            contact.clone(),
            executor.interrupter(),
            shutdown_tx.clone(),
        ));
    }
    let control_task = tokio::spawn(serve_control(
        control,
        executor,
        info,
        iopub_tx.clone(),
        shutdown_tx,
        contact,
    ));
    info!(language = spec.language, "kernel ready");

    shutdown_rx.recv().await;
    shell_task.abort();
    // The shutdown reply has gone out; the control task holds an iopub
    // sender too, so it must end for the iopub task to finish (else every
    // shutdown waited the whole 500 ms below).
    control_task.abort();
    // Let the last iopub messages (status idle after shutdown) go out.
    drop(iopub_tx);
    let _ = tokio::time::timeout(Duration::from_millis(500), iopub_task).await;
    Ok(())
}

fn kernel_info(spec: &LanguageSpec, device_line: &str) -> KernelInfoReply {
    KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: "5.3".to_owned(),
        implementation: spec.implementation.to_owned(),
        implementation_version: env!("CARGO_PKG_VERSION").to_owned(),
        language_info: LanguageInfo {
            name: spec.language.to_owned(),
            version: spec.language_version.clone(),
            mimetype: Some(spec.mimetype.to_owned()),
            file_extension: Some(spec.file_extension.to_owned()),
            pygments_lexer: Some(spec.pygments_lexer.to_owned()),
            codemirror_mode: Some(CodeMirrorMode::Simple(spec.codemirror_mode.to_owned())),
            nbconvert_exporter: Some("script".to_owned()),
        },
        banner: format!("{}\n{}", spec.banner, device_line),
        help_links: spec
            .help_links
            .iter()
            .map(|(text, url)| HelpLink {
                text: (*text).to_owned(),
                url: (*url).to_owned(),
            })
            .collect(),
        debugger: false,
        error: None,
    }
}

/// Whether a failed read should be skipped (bad message) or is a socket fault.
fn log_bad_message(channel: &str, error: &RuntimeError) {
    match error {
        RuntimeError::VerifyError(_) => {
            warn!(
                channel,
                "dropped a message whose HMAC signature does not verify"
            )
        }
        RuntimeError::ParseError { msg_type, source } => {
            warn!(channel, msg_type, %source, "dropped a message whose content does not parse")
        }
        other => warn!(channel, error = %other, "dropped an unreadable message"),
    }
}

fn is_socket_fault(error: &RuntimeError) -> bool {
    matches!(error, RuntimeError::ZmqError(_) | RuntimeError::IoError(_))
}

async fn pump_iopub(
    mut iopub: jupyter_zmq_client::KernelIoPubConnection,
    mut rx: mpsc::Receiver<JupyterMessage>,
) {
    while let Some(mut message) = rx.recv().await {
        // Routing identities of the shell request must not become PUB topics.
        message.zmq_identities.clear();
        if let Err(e) = iopub.send(message).await {
            warn!(error = %e, "iopub send failed");
        }
    }
}

async fn serve_heartbeat(mut hb: jupyter_zmq_client::KernelHeartbeatConnection, contact: Contact) {
    loop {
        match hb.single_heartbeat().await {
            Ok(()) => contact.touch(),
            Err(e) => {
                debug!(error = %e, "heartbeat error");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

struct Shell {
    executor: Executor,
    iopub: mpsc::Sender<JupyterMessage>,
    info: Arc<KernelInfoReply>,
    execution_count: usize,
    history: Vec<(usize, String, String)>,
    shutdown: mpsc::Sender<()>,
    contact: Contact,
}

async fn serve_shell(mut socket: jupyter_zmq_client::KernelShellConnection, mut shell: Shell) {
    loop {
        let request = match socket.read().await {
            Ok(m) => m,
            Err(e) => {
                log_bad_message("shell", &e);
                if is_socket_fault(&e) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        shell.contact.touch();
        shell.publish(Status::busy(), &request).await;
        let reply = shell.handle(&request).await;
        if let Some(reply) = reply
            && let Err(e) = socket.send(reply).await
        {
            warn!(error = %e, "shell reply could not be sent");
        }
        shell.publish(Status::idle(), &request).await;
    }
}

impl Shell {
    async fn publish(&self, content: impl Into<JupyterMessageContent>, parent: &JupyterMessage) {
        let _ = self
            .iopub
            .send(JupyterMessage::new(content.into(), Some(parent)))
            .await;
    }

    async fn handle(&mut self, request: &JupyterMessage) -> Option<JupyterMessage> {
        let reply: JupyterMessageContent = match &request.content {
            JupyterMessageContent::KernelInfoRequest(_) => {
                self.executor.warm_up();
                JupyterMessageContent::KernelInfoReply(Box::new((*self.info).clone()))
            }
            JupyterMessageContent::ExecuteRequest(req) => self.execute(req, request).await.into(),
            JupyterMessageContent::CompleteRequest(req) => {
                let c = self
                    .executor
                    .complete(req.code.clone(), req.cursor_pos)
                    .await;
                CompleteReply {
                    matches: c.matches,
                    cursor_start: c.cursor_start,
                    cursor_end: c.cursor_end,
                    metadata: Default::default(),
                    status: ReplyStatus::Ok,
                    error: None,
                }
                .into()
            }
            JupyterMessageContent::InspectRequest(req) => {
                let found = self
                    .executor
                    .inspect(req.code.clone(), req.cursor_pos)
                    .await;
                InspectReply {
                    found: found.is_some(),
                    data: found.unwrap_or_default(),
                    ..Default::default()
                }
                .into()
            }
            JupyterMessageContent::IsCompleteRequest(req) => {
                let (status, indent) = match self.executor.is_complete(req.code.clone()).await {
                    Completeness::Complete => (IsCompleteReplyStatus::Complete, String::new()),
                    Completeness::Incomplete { indent } => {
                        (IsCompleteReplyStatus::Incomplete, indent)
                    }
                    Completeness::Invalid => (IsCompleteReplyStatus::Invalid, String::new()),
                    Completeness::Unknown => (IsCompleteReplyStatus::Unknown, String::new()),
                };
                IsCompleteReply { status, indent }.into()
            }
            JupyterMessageContent::HistoryRequest(req) => {
                HistoryReply::new(self.history_entries(req)).into()
            }
            JupyterMessageContent::CommInfoRequest(_) => CommInfoReply::default().into(),
            JupyterMessageContent::CommOpen(open) => {
                // No comm targets are registered: close it, as ipykernel does.
                warn!(target_name = %open.target_name, "no such comm target");
                self.publish(
                    CommClose {
                        comm_id: open.comm_id.clone(),
                        data: Default::default(),
                    },
                    request,
                )
                .await;
                return None;
            }
            JupyterMessageContent::CommMsg(_) | JupyterMessageContent::CommClose(_) => return None,
            JupyterMessageContent::ShutdownRequest(req) => {
                // Old clients send shutdown on shell; answer, then stop.
                let reply = JupyterMessage::new(
                    ShutdownReply {
                        restart: req.restart,
                        ..Default::default()
                    },
                    Some(request),
                );
                let _ = self.shutdown.try_send(());
                return Some(reply);
            }
            other => {
                warn!(
                    msg_type = other.message_type(),
                    "ignored a message this kernel does not handle on shell"
                );
                return None;
            }
        };
        Some(JupyterMessage::new(reply, Some(request)))
    }

    async fn execute(&mut self, req: &ExecuteRequest, parent: &JupyterMessage) -> ExecuteReply {
        let store = req.store_history && !req.silent;
        if store {
            self.execution_count += 1;
        }
        let count = ExecutionCount::new(self.execution_count);
        if !req.silent {
            self.publish(
                ExecuteInput {
                    code: req.code.clone(),
                    execution_count: count,
                },
                parent,
            )
            .await;
        }
        let out = Output::new(parent.clone(), self.iopub.clone());
        let result = self.executor.execute(req.code.clone(), out).await;
        let (reply, output_text) = match result {
            Ok(value) => {
                let mut text = String::new();
                if let Some(data) = value
                    && !req.silent
                {
                    text = plain_text(&data);
                    let mut result = ExecuteResult::new(count, data);
                    // jupyter-protocol serialises a missing transient as null,
                    // which the message schema rejects.
                    result.transient = Some(Transient { display_id: None });
                    self.publish(result, parent).await;
                }
                (
                    ExecuteReply {
                        status: ReplyStatus::Ok,
                        execution_count: count,
                        user_expressions: Some(HashMap::new()),
                        ..Default::default()
                    },
                    text,
                )
            }
            Err(CellError {
                ename,
                evalue,
                traceback,
            }) => {
                self.publish(
                    ErrorOutput {
                        ename: ename.clone(),
                        evalue: evalue.clone(),
                        traceback: traceback.clone(),
                    },
                    parent,
                )
                .await;
                let text = format!("{ename}: {evalue}");
                (
                    ExecuteReply {
                        status: ReplyStatus::Error,
                        execution_count: count,
                        user_expressions: Some(HashMap::new()),
                        error: Some(Box::new(ReplyError {
                            ename,
                            evalue,
                            traceback,
                        })),
                        ..Default::default()
                    },
                    text,
                )
            }
        };
        if store {
            self.history
                .push((self.execution_count, req.code.clone(), output_text));
        }
        reply
    }

    fn history_entries(&self, req: &HistoryRequest) -> Vec<HistoryEntry> {
        let entry = |(n, input, output): &(usize, String, String), with_output: bool| {
            if with_output {
                HistoryEntry::InputOutput(0, *n, (input.clone(), output.clone()))
            } else {
                HistoryEntry::Input(0, *n, input.clone())
            }
        };
        match req {
            HistoryRequest::Tail { n, output, .. } => {
                let n = usize::try_from(*n).unwrap_or(0);
                let skip = self.history.len().saturating_sub(n);
                self.history[skip..]
                    .iter()
                    .map(|h| entry(h, *output))
                    .collect()
            }
            HistoryRequest::Range {
                start,
                stop,
                output,
                ..
            } => {
                let (start, stop) = (i64::from(*start), i64::from(*stop));
                self.history
                    .iter()
                    .filter(|(n, _, _)| {
                        let n = *n as i64;
                        n >= start && (stop <= 0 || n < stop)
                    })
                    .map(|h| entry(h, *output))
                    .collect()
            }
            HistoryRequest::Search {
                pattern,
                unique,
                output,
                n,
                ..
            } => {
                let mut seen = std::collections::HashSet::new();
                let mut hits: Vec<_> = self
                    .history
                    .iter()
                    .filter(|(_, input, _)| glob_match(pattern, input))
                    .filter(|(_, input, _)| !*unique || seen.insert(input.clone()))
                    .map(|h| entry(h, *output))
                    .collect();
                if let Ok(n) = usize::try_from(*n)
                    && n > 0
                    && hits.len() > n
                {
                    hits.drain(..hits.len() - n);
                }
                hits
            }
        }
    }
}

/// The text/plain part of a result, for history with output.
fn plain_text(media: &jupyter_protocol::Media) -> String {
    media
        .content
        .iter()
        .find_map(|m| match m {
            jupyter_protocol::MediaType::Plain(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// IPython's history search pattern: `*` matches anything, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

async fn serve_control(
    mut socket: jupyter_zmq_client::KernelControlConnection,
    executor: Executor,
    info: Arc<KernelInfoReply>,
    iopub: mpsc::Sender<JupyterMessage>,
    shutdown: mpsc::Sender<()>,
    contact: Contact,
) {
    let interrupter = executor.interrupter();
    loop {
        let request = match socket.read().await {
            Ok(m) => m,
            Err(e) => {
                log_bad_message("control", &e);
                if is_socket_fault(&e) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        contact.touch();
        let reply: JupyterMessageContent = match &request.content {
            JupyterMessageContent::KernelInfoRequest(_) => {
                executor.warm_up();
                JupyterMessageContent::KernelInfoReply(Box::new((*info).clone()))
            }
            JupyterMessageContent::InterruptRequest(_) => {
                info!("interrupt requested");
                interrupter.interrupt();
                InterruptReply::new().into()
            }
            JupyterMessageContent::ShutdownRequest(req) => {
                info!(restart = req.restart, "shutdown requested");
                let _ = iopub
                    .send(JupyterMessage::new(Status::idle(), Some(&request)))
                    .await;
                let reply = JupyterMessage::new(
                    ShutdownReply {
                        restart: req.restart,
                        ..Default::default()
                    },
                    Some(&request),
                );
                if let Err(e) = socket.send(reply).await {
                    warn!(error = %e, "shutdown reply could not be sent");
                }
                // A cell may still be running; stop it so the process can exit.
                interrupter.interrupt();
                let _ = shutdown.send(()).await;
                continue;
            }
            other => {
                warn!(
                    msg_type = other.message_type(),
                    "ignored a message this kernel does not handle on control"
                );
                continue;
            }
        };
        if let Err(e) = socket
            .send(JupyterMessage::new(reply, Some(&request)))
            .await
        {
            warn!(error = %e, "control reply could not be sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn history_search_globs_like_ipython() {
        assert!(glob_match("let *", "let x = 5;"));
        assert!(glob_match("*x*", "let x = 5;"));
        assert!(!glob_match("let", "let x = 5;"));
        assert!(glob_match("a?c", "abc"));
    }
}
