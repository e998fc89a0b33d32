//! One grading, from a queued row to recorded scores.
//!
//! 1. The notebook to run is rebuilt from the trainer's source: only the
//!    engineer's answer cells come from the submission (`classroom`).
//! 2. A fresh kernel is started through the scheduler (admission, quotas,
//!    the sandbox) for a grading user of its own, `.grading-ID`: a name no
//!    person can have (names never start with a dot), whose folder
//!    `DATA/users/.grading-ID` is the kernel's scratch and all it may write.
//!    It starts with copies of the assignment's data files (released and
//!    hidden ones; released ones only for validation), each at its path
//!    relative to the notebook. The rebuilt notebook is *not* put there: it
//!    holds the hidden tests, and answer cells run before them.
//! 3. The code cells run in order within the assignment's limits
//!    (`execute`); the outputs go into the rebuilt notebook, which is kept
//!    beside the submission; `classroom::score` turns it into points.
//! 4. The kernel is shut down and its scratch removed, whatever happened.
//!
//! [`validate`] runs the same way from the release (public tests only),
//! recording nothing.

use std::sync::Arc;
use std::time::Duration;

use classroom::{Notebook, Policy, Source};

use super::execute::Limits;
use super::files::{self, Files};
use super::offline::{self, Offline};
use crate::kernels::KernelManager;
use crate::store::{GradingOutcome, GradingRow, Role, Store, User};

/// How long a grading's kernel may wait for admission before the grading
/// is queued again (as a platform failure).
const ADMISSION_WAIT: Duration = Duration::from_secs(60);

/// What a grading needs of the gateway.
pub struct Context {
    pub store: Store,
    pub kernels: Arc<KernelManager>,
    pub files: Files,
    pub users_root: std::path::PathBuf,
    /// The quota group grading kernels are admitted in.
    pub group: Option<String>,
}

impl Context {
    /// The quota group a course's grading kernels are admitted in: the
    /// group `GROUP-COURSE` (`grading-ml` for course `ml`) when ops have
    /// made one, which gives the course a CPU/GPU quota of its own, else
    /// the shared grading group.
    pub fn group_for(&self, course: &str) -> Option<String> {
        let shared = self.group.as_deref().unwrap_or(super::GRADING_GROUP);
        let own = format!("{shared}-{course}");
        if self.kernels.scheduling().quotas().group(&own).is_some() {
            Some(own)
        } else {
            self.group.clone()
        }
    }
}

/// Why a grading could not give a score. `Platform` failures are retried;
/// the others are the submission's own (recorded as failed, with the reason).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Platform(String),
    #[error("{0}")]
    Submission(String),
}

/// The owner of a grading's kernel: no person can have this name.
pub fn grading_user(grading: i64, group: Option<String>) -> User {
    User {
        name: format!(".grading-{grading}"),
        role: Role::Engineer,
        group,
    }
}

/// Runs the public tests of `assignment` on an engineer's notebook, as
/// nbgrader's Validate does: the notebook is rebuilt from the *release*
/// (so no hidden test is sent anywhere), run in a grading kernel of its
/// own, and scored; nothing is recorded.
pub async fn validate(
    cx: &Context,
    course: &str,
    assignment: &str,
    policy: &Policy,
    notebook: &Notebook,
) -> Result<classroom::Feedback, RunError> {
    let platform =
        |what: &str, e: &dyn std::fmt::Display| RunError::Platform(format!("{what}: {e}"));
    let release = std::fs::read(cx.files.release(course, assignment))
        .map_err(|e| platform("cannot read the released notebook", &e))?;
    let public =
        Source::parse(&release).map_err(|e| platform("the released notebook is invalid", &e))?;
    let rebuilt = public.rebuild(notebook);
    let user = User {
        name: format!(".validate-{}", uuid::Uuid::new_v4().simple()),
        role: Role::Engineer,
        group: cx.group_for(course),
    };
    let data = (
        cx.files.data(course, assignment),
        classroom::Run::Validation,
    );
    let executed =
        run_notebook(cx, &user, public.language(), rebuilt.notebook, policy, data).await?;
    let scores = classroom::score(&public, &executed);
    Ok(classroom::feedback(&public, &executed, &scores, 0.0, true))
}

/// Runs `notebook`'s code cells in a fresh, offline kernel of `user`'s
/// (`offline`), within the policy's limits, whose scratch holds the data
/// files `run` may have (from the data folder `data.0`); the notebook with
/// its outputs.
async fn run_notebook(
    cx: &Context,
    user: &User,
    language: classroom::Language,
    mut notebook: Notebook,
    policy: &Policy,
    data: (std::path::PathBuf, classroom::Run),
) -> Result<Notebook, RunError> {
    let cells = notebook.code_cells();
    let run = Offline {
        user,
        kernel: language.kernel_name(),
        memory_bytes: policy.memory_mb.saturating_mul(1024 * 1024),
        gpus: None,
        folder: None,
        limits: Limits {
            cell_timeout: Duration::from_secs(policy.cell_timeout_s.max(1)),
            total_timeout: Duration::from_secs(policy.total_timeout_s.max(1)),
            output_bytes: usize::try_from(policy.output_limit_bytes).unwrap_or(usize::MAX),
            stop_on_error: false,
        },
        admission_wait: ADMISSION_WAIT,
        read_only: Vec::new(),
    };
    let stage = move |scratch: &std::path::Path| {
        super::data::stage(&data.0, data.1, scratch)
            .map(|_| ())
            .map_err(|e| format!("the assignment's data files: {e}"))
    };
    let ran = offline::run(&cx.kernels, &cx.users_root, run, &cells, stage, |_| ())
        .await
        .map_err(RunError::Platform)?;
    if ran.lost > 0 {
        return Err(RunError::Platform(format!(
            "the grader missed {} of the kernel's messages",
            ran.lost
        )));
    }
    for (index, run) in ran.runs {
        // nbgrader's LimitOutput (lines per stream, traceback entries).
        let outputs = classroom::limit_outputs(run.outputs, policy.output_limit_bytes);
        notebook.set_outputs(index, outputs, run.execution_count);
    }
    Ok(notebook)
}

/// Grades `row` and says how it ended.
pub async fn grade(cx: &Context, row: &GradingRow) -> Result<GradingOutcome, RunError> {
    let platform =
        |what: &str, e: &dyn std::fmt::Display| RunError::Platform(format!("{what}: {e}"));
    let submission = cx
        .store
        .submission(&row.submission)
        .map_err(|e| platform("cannot read the submission", &e))?
        .ok_or_else(|| RunError::Submission("the submission is gone".into()))?;
    let assignment = cx
        .store
        .assignment(&submission.course, &submission.assignment)
        .map_err(|e| platform("cannot read the assignment", &e))?
        .ok_or_else(|| RunError::Submission("the assignment is gone".into()))?;
    let policy: Policy = serde_json::from_str(&assignment.policy)
        .map_err(|e| platform("the assignment's policy does not parse", &e))?;
    let source_bytes = std::fs::read(cx.files.source(&submission.course, &submission.assignment))
        .map_err(|e| platform("cannot read the assignment's source notebook", &e))?;
    let source = Source::parse(&source_bytes)
        .map_err(|e| platform("the assignment's source notebook is invalid", &e))?;
    let submitted = std::fs::read(cx.files.submission(&submission.id))
        .map_err(|e| platform("cannot read the submitted notebook", &e))?;
    let submitted = Notebook::parse(&submitted)
        .map_err(|e| RunError::Submission(format!("the submitted notebook is invalid: {e}")))?;

    let rebuilt = source.rebuild(&submitted);
    let user = grading_user(row.id, cx.group_for(&submission.course));
    let data = (
        cx.files.data(&submission.course, &submission.assignment),
        classroom::Run::Grading,
    );
    let notebook = run_notebook(
        cx,
        &user,
        source.language(),
        rebuilt.notebook,
        &policy,
        data,
    )
    .await?;
    files::write_atomic(&cx.files.graded(row.id), &notebook.to_bytes())
        .map_err(|e| platform("cannot keep the graded notebook", &e))?;
    let scores = classroom::score(&source, &notebook);
    let (score, max_score, _complete) = classroom::total(&scores);
    Ok(GradingOutcome::Graded {
        scores: serde_json::to_string(&scores).unwrap_or_else(|_| "[]".into()),
        notes: serde_json::to_string(&rebuilt.notes).unwrap_or_else(|_| "[]".into()),
        score,
        max_score,
    })
}
