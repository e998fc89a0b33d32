//! The gateway's side of the launch channel (the `handover` crate): a
//! kernel's report that it listens, and the warm pool's kernels, started
//! for nobody and handed over to their user later.
//!
//! A pooled kernel is execed unconfined, with none of any user's files or
//! variables, and reports that it waits. At handover it is sent what a cold
//! start of the same spec would have had before exec ([`super::start`]'s
//! `Prepared`: folder, environment, limits, confinement with the Landlock
//! ruleset's descriptor), applies it to itself while it has one thread,
//! and only then starts. So a pooled kernel is confined exactly as a cold
//! one, and the gateway learns it listens the same way.

use std::sync::Arc;
use std::time::Duration;

use handover::{End, Handover, Report};
use jupyter_protocol::ConnectionInfo;
use tokio::io::unix::AsyncFd;

use super::{LocalError, LocalLauncher};
use crate::launcher::{KernelSignal, LaunchError, LaunchSpec, Launched, Launcher as _, Listening};

/// How long a pooled kernel may take to load and say it waits.
const WAITING_TIMEOUT: Duration = Duration::from_secs(60);

/// A kernel's launch channel, held until it reports that it listens.
pub(super) struct Channel {
    end: Arc<AsyncFd<End>>,
    connection: ConnectionInfo,
    /// Started into the pool, not handed over yet.
    pooled: bool,
}

impl Channel {
    pub(super) fn new(
        end: End,
        connection: ConnectionInfo,
        pooled: bool,
    ) -> std::io::Result<Channel> {
        end.set_nonblocking()?;
        // SAFETY: `End` owns its descriptor, open until it is dropped with
        // the `AsyncFd`, and always answers the same one.
        let end = unsafe { AsyncFd::register_with_interest(end, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Channel {
            end: Arc::new(end),
            connection,
            pooled,
        })
    }
}

/// The kernel's next report; `None` once its end is closed (it exited).
async fn next_report(end: &AsyncFd<End>) -> Result<Option<Report>, String> {
    loop {
        let mut ready = end.readable().await.map_err(|e| e.to_string())?;
        match ready.try_io(|end| end.get_ref().recv()) {
            Ok(Ok(None)) => return Ok(None),
            Ok(Ok(Some((bytes, _)))) => {
                return serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| format!("the kernel's report is not understood: {e}"));
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_would_block) => continue,
        }
    }
}

/// Waits until a pooled kernel says it waits; why not, when it does not.
async fn waiting(end: &AsyncFd<End>) -> Option<String> {
    Some(
        match tokio::time::timeout(WAITING_TIMEOUT, next_report(end)).await {
            Ok(Ok(Some(Report::Waiting))) => return None,
            Ok(Ok(Some(other))) => format!("it reported {other:?} instead of waiting"),
            Ok(Ok(None)) => "it exited before it was ready to wait".into(),
            Ok(Err(e)) => e,
            Err(_) => format!(
                "it did not say it waits within {}s",
                WAITING_TIMEOUT.as_secs()
            ),
        },
    )
}

impl LocalLauncher {
    /// Starts `spec`'s kernel into the pool and waits until it says it
    /// waits for its handover.
    pub(super) async fn start_pooled(&self, spec: LaunchSpec) -> Result<Launched, LaunchError> {
        if !spec.launch_channel {
            return Err(LaunchError::Spec(
                "only a kernel that speaks the launch channel can wait in the pool".into(),
            ));
        }
        let connection = self.make_files(&spec).await?;
        let (gateway_end, kernel_end) =
            handover::channel::pair().map_err(io("make a launch channel"))?;
        let mut prepared = super::start::Prepared {
            env: super::kernel_env(&spec.env, &spec.cwd),
            dir: spec.cwd.clone(),
            limits: Default::default(),
            confinement: None,
        };
        prepared
            .env
            .insert(handover::channel::POOLED_VAR.into(), "1".into());
        prepared.env.insert(
            "TMPDIR".into(),
            self.temp_dir(spec.kernel_id).display().to_string(),
        );
        let launched = self.spawn(&spec, connection.clone(), prepared, Some(&kernel_end))?;
        drop(kernel_end);
        let failure = match Channel::new(gateway_end, connection, true) {
            Err(e) => Some(format!("its launch channel cannot be watched: {e}")),
            Ok(channel) => {
                let end = channel.end.clone();
                self.channels.lock().insert(spec.kernel_id, channel);
                waiting(&end).await
            }
        };
        let Some(failure) = failure else {
            return Ok(launched);
        };
        let log = self.log_tail(spec.kernel_id, 2000).await;
        let _ = self.signal(&launched.locator, KernelSignal::Kill).await;
        self.cleanup(spec.kernel_id, &launched.locator).await;
        Err(LocalError::Pool(format!("{failure}; its log: {log}")).into())
    }

    /// Hands the pooled kernel `spec.kernel_id` to `spec`'s user.
    pub(super) async fn give(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        let (end, connection) = {
            let mut channels = self.channels.lock();
            let Some(channel) = channels.get_mut(&spec.kernel_id).filter(|c| c.pooled) else {
                return Err(
                    LocalError::Pool("that kernel is not waiting in the pool".into()).into(),
                );
            };
            channel.pooled = false;
            (channel.end.clone(), channel.connection.clone())
        };
        let prepared = self.prepare(&spec, &connection)?;
        let handover = Handover {
            cwd: prepared.dir,
            env: prepared.env.into_iter().collect(),
            limits: prepared.limits,
            confinement: prepared.confinement,
        };
        handover
            .send(end.get_ref())
            .map_err(|e| LocalError::Pool(format!("the handover was not sent: {e}")).into())
    }

    /// Waits for the kernel's report that it listens (see [`Listening`]).
    pub(super) async fn wait_listening(&self, kernel_id: uuid::Uuid) -> Listening {
        let Some(channel) = self.channels.lock().remove(&kernel_id) else {
            return Listening::Unknown;
        };
        loop {
            return match next_report(&channel.end).await {
                Ok(Some(Report::Listening)) => Listening::Yes,
                Ok(Some(Report::Waiting)) => continue,
                Ok(Some(Report::Failed { reason })) => Listening::Failed(reason),
                Ok(None) => Listening::Failed("it exited before it listened".into()),
                Err(e) => Listening::Failed(e),
            };
        }
    }
}

fn io(doing: &'static str) -> impl Fn(std::io::Error) -> LaunchError {
    move |source| LaunchError::Io {
        doing: doing.into(),
        source,
    }
}
