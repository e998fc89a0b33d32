//! The grading queue: many submissions graded at once, fairly across
//! courses, none lost and none graded twice.
//!
//! The queue is the `gradings` table, so it survives a restart: gradings a
//! stopped gateway left running are queued again when the grader starts,
//! and the kernels they had are stopped. Up to `parallel` run at a time.
//! The next one comes from the course with the fewest running, then the
//! oldest: one course's deadline flood waits its turn behind another
//! course's single submission, never in front of it (nbgrader #174, and
//! Codabench's one-FIFO-for-all #1693).
//!
//! A platform failure (no kernel could start) puts the grading back in the
//! queue, up to [`ATTEMPTS`] times; a failure of the submission itself is
//! recorded with its reason. A result is recorded only by the attempt that
//! holds the row (`Store::finish_grading`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::run::{self, Context, RunError};
use crate::store::{GradingOutcome, GradingRow};

/// How many times a grading is tried when the platform fails it.
pub const ATTEMPTS: i64 = 3;

/// How long the grader waits between looks at the queue when nothing
/// wakes it (another gateway process, `lab assignment grade`).
const POLL: Duration = Duration::from_secs(2);

/// Grades queued submissions in the background.
pub struct Grader {
    cx: Context,
    parallel: usize,
    /// Gradings running now, per course.
    running: Mutex<HashMap<String, usize>>,
    wake: Notify,
    /// Validations (public tests on an engineer's copy): as many at once
    /// as gradings, one per engineer.
    validations: tokio::sync::Semaphore,
    validating: Mutex<std::collections::HashSet<String>>,
}

/// Why a validation gave no feedback.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("a validation of yours is running: wait for its result")]
    Busy,
    #[error("{0}")]
    Failed(String),
}

/// Where a queued grading stands: how many are ahead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// 1 is next.
    pub position: usize,
    pub queued: usize,
    pub running: usize,
}

impl Grader {
    pub fn new(cx: Context, parallel: usize) -> Arc<Grader> {
        Arc::new(Grader {
            cx,
            parallel: parallel.max(1),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            validations: tokio::sync::Semaphore::new(parallel.max(1)),
            validating: Mutex::new(Default::default()),
        })
    }

    /// Something was queued: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Re-queues what a stopped gateway left running, stops the kernels it
    /// had, and grades in the background from then on.
    pub async fn start(self: &Arc<Self>) {
        for kernel in self.cx.kernels.all() {
            let owner = kernel.owner();
            if owner.starts_with(".grading-") || owner.starts_with(".validate-") {
                tracing::info!(kernel_id = %kernel.id, "stopping a grading kernel left from before a restart");
                if let Err(e) = self.cx.kernels.shutdown(&kernel).await {
                    tracing::warn!(kernel_id = %kernel.id, error = %e, "cannot stop an old grading kernel");
                }
            }
        }
        match self.cx.store.requeue_interrupted_gradings(ATTEMPTS) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                gradings = n,
                "gradings interrupted by a restart queued again"
            ),
            Err(e) => tracing::error!(error = %e, "cannot re-queue interrupted gradings"),
        }
        let me = self.clone();
        tokio::spawn(async move { me.serve().await });
    }

    async fn serve(self: Arc<Self>) {
        loop {
            while self.running_total() < self.parallel {
                let Some(row) = self.next() else { break };
                let me = self.clone();
                tokio::spawn(async move { me.grade(row).await });
            }
            let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
        }
    }

    fn running_total(&self) -> usize {
        self.running.lock().values().sum()
    }

    /// Takes the next grading: the course with the fewest running first,
    /// then the oldest.
    fn next(&self) -> Option<GradingRow> {
        let queued = match self.cx.store.queued_gradings() {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the grading queue");
                return None;
            }
        };
        let mut heads: Vec<(usize, i64)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        {
            let running = self.running.lock();
            for (id, course) in &queued {
                if seen.insert(course.clone()) {
                    heads.push((running.get(course).copied().unwrap_or(0), *id));
                }
            }
        }
        heads.sort();
        for (_, id) in heads {
            match self.cx.store.take_grading(id) {
                Ok(Some(row)) => {
                    *self.running.lock().entry(row.course.clone()).or_default() += 1;
                    return Some(row);
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(grading = id, error = %e, "cannot take a grading");
                    return None;
                }
            }
        }
        None
    }

    async fn grade(self: Arc<Self>, row: GradingRow) {
        tracing::info!(grading = row.id, submission = %row.submission, attempt = row.attempts, "grading");
        let outcome = match run::grade(&self.cx, &row).await {
            Ok(outcome) => Some(outcome),
            Err(RunError::Submission(reason)) => Some(GradingOutcome::Failed { reason }),
            Err(RunError::Platform(reason)) if row.attempts >= ATTEMPTS => {
                Some(GradingOutcome::Failed {
                    reason: format!("the platform failed {ATTEMPTS} times: {reason}"),
                })
            }
            Err(RunError::Platform(reason)) => {
                tracing::warn!(grading = row.id, %reason, "grading failed on the platform; queued again");
                if let Err(e) = self.cx.store.requeue_grading(row.id, row.attempts) {
                    tracing::error!(grading = row.id, error = %e, "cannot re-queue a grading");
                }
                None
            }
        };
        if let Some(outcome) = outcome {
            match self.cx.store.finish_grading(row.id, row.attempts, &outcome) {
                Ok(true) => {
                    tracing::info!(grading = row.id, outcome = kind(&outcome), "grading done")
                }
                Ok(false) => tracing::warn!(
                    grading = row.id,
                    "a grading's result came after another attempt took it; dropped"
                ),
                Err(e) => tracing::error!(grading = row.id, error = %e, "cannot record a grading"),
            }
        }
        if let Some(n) = self.running.lock().get_mut(&row.course) {
            *n = n.saturating_sub(1);
        }
        self.wake();
    }

    /// Runs the public tests of an assignment on `user`'s notebook and
    /// says how it did; nothing is recorded. One at a time per engineer.
    pub async fn validate(
        self: &Arc<Self>,
        user: &str,
        course: &str,
        assignment: &str,
        policy: &classroom::Policy,
        notebook: &classroom::Notebook,
    ) -> Result<classroom::Feedback, ValidateError> {
        if !self.validating.lock().insert(user.to_owned()) {
            return Err(ValidateError::Busy);
        }
        // In a task of its own: a client that goes away mid-way must not
        // drop the run between starting its kernel and stopping it. The
        // task clears the busy flag however it ends.
        let me = self.clone();
        let (user, course, assignment) =
            (user.to_owned(), course.to_owned(), assignment.to_owned());
        let (policy, notebook) = (policy.clone(), notebook.clone());
        let task = tokio::spawn(async move {
            struct Busy<'a>(&'a Grader, &'a str);
            impl Drop for Busy<'_> {
                fn drop(&mut self) {
                    self.0.validating.lock().remove(self.1);
                }
            }
            let _busy = Busy(&me, &user);
            let _permit = me
                .validations
                .acquire()
                .await
                .map_err(|e| ValidateError::Failed(e.to_string()))?;
            run::validate(&me.cx, &course, &assignment, &policy, &notebook)
                .await
                .map_err(|e| ValidateError::Failed(e.to_string()))
        });
        task.await
            .map_err(|e| ValidateError::Failed(format!("the validation stopped: {e}")))?
    }

    /// Where a queued grading stands, counted as the fair order serves:
    /// the gradings of its course before it, and as many of every other
    /// course's (each course gets one turn per round).
    pub fn position(&self, grading: i64) -> Option<Position> {
        let queued = self.cx.store.queued_gradings().ok()?;
        let course = &queued.iter().find(|(id, _)| *id == grading)?.1;
        let rank = queued
            .iter()
            .filter(|(id, c)| c == course && *id < grading)
            .count();
        let mut per_course: HashMap<&str, usize> = HashMap::new();
        for (_, c) in &queued {
            if c != course {
                *per_course.entry(c.as_str()).or_default() += 1;
            }
        }
        let others: usize = per_course.values().map(|&n| n.min(rank)).sum();
        Some(Position {
            position: rank + others + 1,
            queued: queued.len(),
            running: self.running_total(),
        })
    }
}

fn kind(outcome: &GradingOutcome) -> &'static str {
    match outcome {
        GradingOutcome::Graded { .. } => "graded",
        GradingOutcome::Failed { .. } => "failed",
    }
}
