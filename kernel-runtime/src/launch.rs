//! The kernel's side of its launch channel (the `handover` crate): a
//! pooled kernel waits here for its user, applies what the gateway sends
//! and only then goes on; every kernel started with a channel says when
//! its sockets listen.
//!
//! Nothing here may start a thread before the handover is applied:
//! Landlock confines the calling thread only, so the process must have
//! one thread when it does.

use handover::{End, Handover, HandoverError, Report};

/// The channel, kept until the kernel listens.
pub struct LaunchChannel(End);

/// What the launch channel said before the kernel starts.
pub enum Begin {
    /// No channel: started by a plain Jupyter client.
    Plain,
    /// Go on; report through this once listening.
    Go(LaunchChannel),
    /// The gateway went away before handing this pooled kernel over.
    Abandoned,
}

/// Takes the inherited channel, and for a pooled kernel waits for its
/// handover and applies it (folder, environment, limits, confinement).
///
/// # Safety
/// Call it while the process has one thread: it changes the environment,
/// and the confinement must cover the whole process.
pub unsafe fn begin() -> Result<Begin, HandoverError> {
    // SAFETY: the caller guarantees a single thread.
    let Some((end, pooled)) = (unsafe { End::inherited() })? else {
        return Ok(Begin::Plain);
    };
    if pooled {
        Report::Waiting.send(&end)?;
        let handover = match Handover::receive(&end) {
            Ok(h) => h,
            Err(HandoverError::Closed) => return Ok(Begin::Abandoned),
            Err(e) => return Err(refuse(&end, e)),
        };
        // SAFETY: still a single thread (the caller's guarantee).
        if let Err(e) = unsafe { handover.apply() } {
            return Err(refuse(&end, HandoverError::Io(e)));
        }
    }
    Ok(Begin::Go(LaunchChannel(end)))
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
