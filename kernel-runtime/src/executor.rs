//! The thread that owns an [`Engine`].
//!
//! Engines block (evcxr waits on rustc, Rhai runs a loop) and some are not
//! `Send` (Rhai's engine and scope), so each kernel runs its engine on one
//! dedicated OS thread, created there, and talks to it through jobs. The
//! async protocol side never blocks on a cell; it awaits a oneshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jupyter_protocol::Media;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{CellError, Completeness, Completions, Engine, Interrupter, Output};

/// A request for the engine thread.
pub enum Job {
    Execute {
        code: String,
        out: Box<Output>,
        reply: oneshot::Sender<Result<Option<Media>, CellError>>,
    },
    Complete {
        code: String,
        cursor_pos: usize,
        reply: oneshot::Sender<Completions>,
    },
    Inspect {
        code: String,
        cursor_pos: usize,
        reply: oneshot::Sender<Option<Media>>,
    },
    IsComplete {
        code: String,
        reply: oneshot::Sender<Completeness>,
    },
    /// [`Engine::warm_up`], asked for by no request.
    WarmUp,
}

/// Handle to a running engine thread.
#[derive(Clone)]
pub struct Executor {
    jobs: mpsc::UnboundedSender<Job>,
    interrupter: Arc<dyn Interrupter>,
    /// Whether [`Executor::warm_up`] has queued the warm-up.
    warm_up_queued: Arc<AtomicBool>,
    /// See [`Starting::is_complete_by`].
    is_complete: Option<IsComplete>,
}

/// What an engine factory returns, on the engine's own thread.
pub type Built = (Box<dyn Engine>, Arc<dyn Interrupter>);

/// An engine thread that may still be building its engine: the kernel
/// binds its sockets meanwhile and waits for it ([`Starting::ready`])
/// before it says it listens, so no request arrives before it can be
/// answered.
pub struct Starting {
    jobs: mpsc::UnboundedSender<Job>,
    ready: oneshot::Receiver<Result<Arc<dyn Interrupter>, String>>,
    is_complete: Option<IsComplete>,
}

/// A language's `is_complete` that needs no engine (a scan of the code).
pub type IsComplete = fn(&str) -> Completeness;

impl Starting {
    /// The executor, once its engine is built; the build's error otherwise.
    pub async fn ready(self) -> Result<Executor, String> {
        let interrupter = self
            .ready
            .await
            .map_err(|_| "the engine thread died while starting".to_owned())??;
        Ok(Executor {
            jobs: self.jobs,
            interrupter,
            warm_up_queued: Arc::new(AtomicBool::new(false)),
            is_complete: self.is_complete,
        })
    }

    /// Answers `is_complete` with `check`, on the caller's side: never
    /// behind a cell, a warm-up or a completion on the engine thread (a
    /// console asks it at every Enter, with a short timeout).
    pub fn is_complete_by(self, check: IsComplete) -> Starting {
        Starting {
            is_complete: Some(check),
            ..self
        }
    }

    /// Waits here, on a plain thread, until the engine is built: for an
    /// engine that takes seconds (evcxr), whose kernel should not hold
    /// connections it cannot serve.
    pub fn built(self) -> Result<Starting, String> {
        let interrupter = self
            .ready
            .blocking_recv()
            .map_err(|_| "the engine thread died while starting".to_owned())??;
        let (tx, ready) = oneshot::channel();
        let _ = tx.send(Ok(interrupter));
        Ok(Starting {
            jobs: self.jobs,
            ready,
            is_complete: self.is_complete,
        })
    }
}

impl Executor {
    /// Starts the engine thread and returns at once; `build` runs on that
    /// thread and its error comes from [`Starting::ready`].
    pub fn start<F>(name: &str, build: F) -> Result<Starting, String>
    where
        F: FnOnce() -> Result<Built, String> + Send + 'static,
    {
        let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("{name}-engine"))
            // Rhai recursion and rustc-driven evcxr both want more than 2 MiB.
            .stack_size(64 << 20)
            .spawn(move || {
                let mut engine = match build() {
                    Ok((engine, interrupter)) => {
                        let _ = ready_tx.send(Ok(interrupter));
                        engine
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = jobs_rx.blocking_recv() {
                    match job {
                        Job::WarmUp => warm_up(engine.as_mut(), &|| !jobs_rx.is_empty()),
                        job => run_job(engine.as_mut(), job),
                    }
                }
            })
            .map_err(|e| format!("cannot spawn the engine thread: {e}"))?;
        Ok(Starting {
            jobs: jobs_tx,
            ready: ready_rx,
            is_complete: None,
        })
    }

    pub fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupter.clone()
    }

    /// Queues the engine's warm-up ([`Engine::warm_up`]) the first time;
    /// does nothing after. The kernel calls it when a client first asks for
    /// `kernel_info`: the client is there, and the kernel's start is over,
    /// so the work slows neither. A request sent meanwhile waits for the
    /// step under way (at most one cell's build), then the warm-up stops.
    pub fn warm_up(&self) {
        if !self.warm_up_queued.swap(true, Ordering::SeqCst) {
            let _ = self.jobs.send(Job::WarmUp);
        }
    }

    async fn ask<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).ok()?;
        rx.await.ok()
    }

    pub async fn execute(&self, code: String, out: Output) -> Result<Option<Media>, CellError> {
        self.ask(|reply| Job::Execute {
            code,
            out: Box::new(out),
            reply,
        })
        .await
        .unwrap_or_else(|| {
            Err(CellError::new(
                "KernelError",
                "the engine thread has stopped",
            ))
        })
    }

    pub async fn complete(&self, code: String, cursor_pos: usize) -> Completions {
        self.ask(|reply| Job::Complete {
            code,
            cursor_pos,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    pub async fn inspect(&self, code: String, cursor_pos: usize) -> Option<Media> {
        self.ask(|reply| Job::Inspect {
            code,
            cursor_pos,
            reply,
        })
        .await
        .flatten()
    }

    pub async fn is_complete(&self, code: String) -> Completeness {
        if let Some(check) = self.is_complete {
            return check(&code);
        }
        self.ask(|reply| Job::IsComplete { code, reply })
            .await
            .unwrap_or(Completeness::Unknown)
    }
}

fn run_job(engine: &mut dyn Engine, job: Job) {
    match job {
        Job::Execute { code, out, reply } => {
            // A panic inside a language binding must fail the cell, not the kernel.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.execute(&code, &out)
            }))
            .unwrap_or_else(|panic| Err(CellError::new("Panic", panic_message(&panic))));
            let _ = reply.send(result);
        }
        Job::Complete {
            code,
            cursor_pos,
            reply,
        } => {
            let _ = reply.send(engine.complete(&code, cursor_pos));
        }
        Job::Inspect {
            code,
            cursor_pos,
            reply,
        } => {
            let _ = reply.send(engine.inspect(&code, cursor_pos));
        }
        Job::IsComplete { code, reply } => {
            let _ = reply.send(engine.is_complete(&code));
        }
        // The engine loop answers it itself, with the queue in view.
        Job::WarmUp => warm_up(engine, &|| false),
    }
}

fn warm_up(engine: &mut dyn Engine, waiting: &dyn Fn() -> bool) {
    // No cell to fail: a panic here is logged, and the kernel goes on.
    if let Err(panic) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.warm_up(waiting)))
    {
        tracing::warn!(
            panic = panic_message(&panic),
            "the engine's warm-up panicked"
        );
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the engine panicked".to_owned()
    }
}
