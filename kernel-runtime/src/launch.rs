//! The kernel's side of its launch channel (the `handover` crate): a
//! pooled kernel prepares what needs no user, waits here for its user,
//! applies what the gateway sends and only then goes on; every kernel
//! started with a channel says when its sockets listen.
//!
//! Landlock confines the calling thread only, so the process must have one
//! thread when it applies its handover. What a pooled kernel prepares
//! before it waits may start threads and processes, but only if they are
//! all gone before it says it waits: checked, not assumed.

use std::time::Duration;

use handover::{End, Handover, HandoverError, Report};

/// How long the threads and processes of a pooled kernel's preparation may
/// take to end.
const ALONE_WITHIN: Duration = Duration::from_secs(10);

/// The channel, kept until the kernel listens.
pub struct LaunchChannel(End);

/// What the launch channel said before the kernel starts; `T` is what a
/// pooled kernel prepared before it waited.
pub enum Begin<T> {
    /// No channel: started by a plain Jupyter client.
    Plain,
    /// Go on; report through this once listening.
    Go(LaunchChannel, Option<T>),
    /// The gateway went away before handing this pooled kernel over.
    Abandoned,
}

/// Takes the inherited channel, and for a pooled kernel runs `prepare`
/// (work that needs no user: it must not read any user's files), waits
/// until every thread and process it started has ended, then waits for its handover
/// and applies it (folder, environment, limits, confinement).
///
/// # Safety
/// Call it while the process has one thread: it changes the environment,
/// and the confinement must cover the whole process.
pub unsafe fn begin<T>(prepare: impl FnOnce() -> T) -> Result<Begin<T>, HandoverError> {
    // SAFETY: the caller guarantees a single thread.
    let Some((end, pooled)) = (unsafe { End::inherited() })? else {
        return Ok(Begin::Plain);
    };
    if !pooled {
        return Ok(Begin::Go(LaunchChannel(end), None));
    }
    let prepared = prepare();
    match handover::wait_until_alone(ALONE_WITHIN) {
        Ok(true) => {}
        Ok(false) => {
            let e = std::io::Error::other(format!(
                "what preparing started did not end within {}s: threads {}; child processes {:?}",
                ALONE_WITHIN.as_secs(),
                handover::thread_names().join(", "),
                handover::children()
            ));
            return Err(refuse(&end, HandoverError::Io(e)));
        }
        Err(e) => return Err(refuse(&end, HandoverError::Io(e))),
    }
    Report::Waiting.send(&end)?;
    let handover = match Handover::receive(&end) {
        Ok(h) => h,
        Err(HandoverError::Closed) => return Ok(Begin::Abandoned),
        Err(e) => return Err(refuse(&end, e)),
    };
    // SAFETY: one thread again (checked above; `apply` checks it too).
    if let Err(e) = unsafe { handover.apply() } {
        return Err(refuse(&end, HandoverError::Io(e)));
    }
    Ok(Begin::Go(LaunchChannel(end), Some(prepared)))
}

/// Tells the gateway why the handover failed, and gives the error back.
fn refuse(end: &End, e: HandoverError) -> HandoverError {
    let reason = e.to_string();
    if let Err(report) = (Report::Failed { reason }).send(end) {
        // No log subscriber exists yet; stderr is the kernel's log.
        eprintln!("cannot report a failed handover: {report}");
    }
    e
}

impl LaunchChannel {
    /// Says that every socket listens, and closes the channel.
    pub fn listening(self) {
        if let Err(e) = Report::Listening.send(&self.0) {
            // The gateway falls back to asking the kernel.
            tracing::warn!(error = %e, "cannot tell the gateway the kernel listens");
        }
    }
}
