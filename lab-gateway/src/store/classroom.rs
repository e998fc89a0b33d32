//! Graded exercises in SQLite: assignments, extensions, submissions and
//! their gradings.
//!
//! A submission is immutable once recorded (its notebook is a file the
//! gateway wrote, named by the submission's random id). Each grading of it is
//! a row: a regrade adds one beside the old. A row moves `queued` →
//! `grading` → `graded`|`failed`; taking it bumps `attempts`, and a result
//! is recorded only by the attempt that holds it, so a grader that outlived
//! a restart (or a second one) can never record a second grade. After a
//! restart, rows left `grading` go back to `queued`.

use rusqlite::{OptionalExtension as _, params};

use super::{Store, StoreError, now};

/// An assignment of a course. `policy` is `classroom::Policy` as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRow {
    pub course: String,
    pub name: String,
    pub policy: String,
    pub max_score: f64,
    pub released: Option<String>,
    pub published: Option<String>,
    pub created: String,
    pub updated: String,
}

/// One submitted notebook: who, what, when (the server's clock).
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRow {
    pub id: String,
    pub course: String,
    pub assignment: String,
    pub user_name: String,
    pub submitted: String,
    pub sha256: String,
}

/// Where a grading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GradingState {
    Queued,
    Grading,
    Graded,
    Failed,
}

impl GradingState {
    pub fn as_str(self) -> &'static str {
        match self {
            GradingState::Queued => "queued",
            GradingState::Grading => "grading",
            GradingState::Graded => "graded",
            GradingState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> GradingState {
        match s {
            "grading" => GradingState::Grading,
            "graded" => GradingState::Graded,
            "failed" => GradingState::Failed,
            _ => GradingState::Queued,
        }
    }
}

/// One grading of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct GradingRow {
    pub id: i64,
    pub submission: String,
    pub course: String,
    pub state: GradingState,
    pub reason: Option<String>,
    pub attempts: i64,
    pub queued: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// `classroom::CellScore` list as JSON.
    pub scores: Option<String>,
    /// The rebuild's notes (what of the submission was ignored), as JSON.
    pub notes: Option<String>,
    pub score: Option<f64>,
    pub max_score: Option<f64>,
}

/// How a grading ended.
#[derive(Debug, Clone, PartialEq)]
pub enum GradingOutcome {
    Graded {
        scores: String,
        notes: String,
        score: f64,
        max_score: f64,
    },
    Failed {
        reason: String,
    },
}

/// A trainer's points and comment on a manually graded cell.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualGrade {
    pub grade_id: String,
    pub points: f64,
    pub comment: String,
    pub grader: String,
    pub at: String,
}

const GRADING_COLUMNS: &str = "id, submission, course, state, reason, attempts, queued, started, finished, scores, notes, score, max_score";

fn grading_row(r: &rusqlite::Row) -> rusqlite::Result<GradingRow> {
    Ok(GradingRow {
        id: r.get(0)?,
        submission: r.get(1)?,
        course: r.get(2)?,
        state: GradingState::parse(&r.get::<_, String>(3)?),
        reason: r.get(4)?,
        attempts: r.get(5)?,
        queued: r.get(6)?,
        started: r.get(7)?,
        finished: r.get(8)?,
        scores: r.get(9)?,
        notes: r.get(10)?,
        score: r.get(11)?,
        max_score: r.get(12)?,
    })
}

const ASSIGNMENT_COLUMNS: &str =
    "course, name, policy, max_score, released, published, created, updated";

fn assignment_row(r: &rusqlite::Row) -> rusqlite::Result<AssignmentRow> {
    Ok(AssignmentRow {
        course: r.get(0)?,
        name: r.get(1)?,
        policy: r.get(2)?,
        max_score: r.get(3)?,
        released: r.get(4)?,
        published: r.get(5)?,
        created: r.get(6)?,
        updated: r.get(7)?,
    })
}

fn submission_row(r: &rusqlite::Row) -> rusqlite::Result<SubmissionRow> {
    Ok(SubmissionRow {
        id: r.get(0)?,
        course: r.get(1)?,
        assignment: r.get(2)?,
        user_name: r.get(3)?,
        submitted: r.get(4)?,
        sha256: r.get(5)?,
    })
}

impl Store {
    /// Records an assignment, or replaces its policy and score of an
    /// existing one (its release and submissions stay).
    pub fn save_assignment(
        &self,
        course: &str,
        name: &str,
        policy: &str,
        max_score: f64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let t = now();
            c.execute(
                "INSERT INTO assignments (course, name, policy, max_score, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (course, name) DO UPDATE SET policy = ?3, max_score = ?4, updated = ?5",
                params![course, name, policy, max_score, t],
            )?;
            Ok(())
        })
    }

    pub fn assignment(
        &self,
        course: &str,
        name: &str,
    ) -> Result<Option<AssignmentRow>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE course = ?1 AND name = ?2"
                ),
                params![course, name],
                assignment_row,
            )
            .optional()?)
        })
    }

    /// A course's assignments, or every course's, by course and name.
    pub fn assignments(&self, course: Option<&str>) -> Result<Vec<AssignmentRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                 WHERE ?1 IS NULL OR course = ?1 ORDER BY course, name"
            ))?;
            let rows = stmt
                .query_map(params![course], assignment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Marks an assignment released (`true`) or back to a draft.
    pub fn set_released(&self, course: &str, name: &str, released: bool) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE assignments SET released = CASE WHEN ?3 THEN COALESCE(released, ?4) END
                 WHERE course = ?1 AND name = ?2",
                params![course, name, released, now()],
            )?;
            Ok(())
        })
    }

    /// Marks an assignment's grades published (hidden results show).
    pub fn set_published(
        &self,
        course: &str,
        name: &str,
        published: bool,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE assignments SET published = CASE WHEN ?3 THEN COALESCE(published, ?4) END
                 WHERE course = ?1 AND name = ?2",
                params![course, name, published, now()],
            )?;
            Ok(())
        })
    }

    /// Gives `user` more time on an assignment (0 takes it back).
    pub fn set_extension(
        &self,
        course: &str,
        assignment: &str,
        user: &str,
        seconds: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            if seconds <= 0 {
                c.execute(
                    "DELETE FROM extensions WHERE course = ?1 AND assignment = ?2 AND user_name = ?3",
                    params![course, assignment, user],
                )?;
            } else {
                c.execute(
                    "INSERT OR REPLACE INTO extensions (course, assignment, user_name, seconds)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![course, assignment, user, seconds],
                )?;
            }
            Ok(())
        })
    }

    pub fn extension(
        &self,
        course: &str,
        assignment: &str,
        user: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT seconds FROM extensions WHERE course = ?1 AND assignment = ?2 AND user_name = ?3",
                params![course, assignment, user],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// Records a submission and queues its grading, in one transaction:
    /// there is never a submission nobody will grade. Returns the
    /// grading's id.
    pub fn add_submission(&self, row: &SubmissionRow) -> Result<i64, StoreError> {
        self.add_submission_if(row, |_| Ok::<(), std::convert::Infallible>(()))?
            .map_err(|never| match never {})
    }

    /// [`Store::add_submission`], unless `allow`, given when the submitter's
    /// earlier submissions to the assignment were made, refuses it: in one
    /// transaction, so two submits at once cannot both pass a cap.
    pub fn add_submission_if<E>(
        &self,
        row: &SubmissionRow,
        allow: impl FnOnce(&[String]) -> Result<(), E>,
    ) -> Result<Result<i64, E>, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let earlier = tx
                .prepare(
                    "SELECT submitted FROM submissions WHERE course = ?1 AND assignment = ?2 AND user_name = ?3",
                )?
                .query_map(params![row.course, row.assignment, row.user_name], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            if let Err(refused) = allow(&earlier) {
                return Ok(Err(refused));
            }
            tx.execute(
                "INSERT INTO submissions (id, course, assignment, user_name, submitted, sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.id, row.course, row.assignment, row.user_name, row.submitted, row.sha256],
            )?;
            tx.execute(
                "INSERT INTO gradings (submission, course, state, queued) VALUES (?1, ?2, 'queued', ?3)",
                params![row.id, row.course, now()],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Ok(id))
        })
    }

    pub fn submission(&self, id: &str) -> Result<Option<SubmissionRow>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT id, course, assignment, user_name, submitted, sha256 FROM submissions WHERE id = ?1",
                params![id],
                submission_row,
            )
            .optional()?)
        })
    }

    /// An assignment's submissions, oldest first; only `user`'s when given.
    pub fn submissions(
        &self,
        course: &str,
        assignment: &str,
        user: Option<&str>,
    ) -> Result<Vec<SubmissionRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, course, assignment, user_name, submitted, sha256 FROM submissions
                 WHERE course = ?1 AND assignment = ?2 AND (?3 IS NULL OR user_name = ?3)
                 ORDER BY submitted, rowid",
            )?;
            let rows = stmt
                .query_map(params![course, assignment, user], submission_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Every grading of a submission, oldest first.
    pub fn gradings(&self, submission: &str) -> Result<Vec<GradingRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {GRADING_COLUMNS} FROM gradings WHERE submission = ?1 ORDER BY id"
            ))?;
            let rows = stmt
                .query_map(params![submission], grading_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    pub fn grading(&self, id: i64) -> Result<Option<GradingRow>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {GRADING_COLUMNS} FROM gradings WHERE id = ?1"),
                params![id],
                grading_row,
            )
            .optional()?)
        })
    }

    /// Queues another grading of a submission (a regrade), unless one is
    /// queued for it already (one running now may have read the source
    /// before a fix: it does not count). Returns the queued grading's id.
    pub fn queue_grading(&self, submission: &str) -> Result<i64, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let pending: Option<i64> = tx
                .query_row(
                    "SELECT id FROM gradings WHERE submission = ?1 AND state = 'queued'",
                    params![submission],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = pending {
                return Ok(id);
            }
            let course: String = tx.query_row(
                "SELECT course FROM submissions WHERE id = ?1",
                params![submission],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO gradings (submission, course, state, queued) VALUES (?1, ?2, 'queued', ?3)",
                params![submission, course, now()],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
    }

    /// Puts back in the queue the gradings a stopped gateway left running,
    /// unless they were taken `max_attempts` times already: a submission
    /// that brought the gateway down that often is failed, not run again.
    pub fn requeue_interrupted_gradings(&self, max_attempts: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE gradings SET state = 'failed', finished = ?2,
                    reason = 'the gateway stopped while grading it ' || attempts || ' times'
                 WHERE state = 'grading' AND attempts >= ?1",
                params![max_attempts, now()],
            )?;
            Ok(c.execute(
                "UPDATE gradings SET state = 'queued', started = NULL WHERE state = 'grading'",
                [],
            )?)
        })
    }

    /// Puts a grading this attempt holds back in the queue (the platform
    /// failed it; it is tried again).
    pub fn requeue_grading(&self, id: i64, attempt: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE gradings SET state = 'queued', started = NULL
                 WHERE id = ?1 AND attempts = ?2 AND state = 'grading'",
                params![id, attempt],
            )? == 1)
        })
    }

    /// The queued gradings, oldest first: (id, course).
    pub fn queued_gradings(&self) -> Result<Vec<(i64, String)>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id, course FROM gradings WHERE state = 'queued' ORDER BY id")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Takes a queued grading for this attempt; `None` if it is not queued
    /// any more.
    pub fn take_grading(&self, id: i64) -> Result<Option<GradingRow>, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE gradings SET state = 'grading', attempts = attempts + 1, started = ?2
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now()],
            )?;
            if n == 0 {
                return Ok(None);
            }
            Ok(c.query_row(
                &format!("SELECT {GRADING_COLUMNS} FROM gradings WHERE id = ?1"),
                params![id],
                grading_row,
            )
            .optional()?)
        })
    }

    /// Records how a grading ended, if `attempt` still holds it; `false`
    /// when it does not (the result is dropped, never recorded twice).
    pub fn finish_grading(
        &self,
        id: i64,
        attempt: i64,
        outcome: &GradingOutcome,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = match outcome {
                GradingOutcome::Graded {
                    scores,
                    notes,
                    score,
                    max_score,
                } => c.execute(
                    "UPDATE gradings SET state = 'graded', finished = ?3, scores = ?4, notes = ?5,
                        score = ?6, max_score = ?7, reason = NULL
                     WHERE id = ?1 AND attempts = ?2 AND state = 'grading'",
                    params![id, attempt, now(), scores, notes, score, max_score],
                )?,
                GradingOutcome::Failed { reason } => c.execute(
                    "UPDATE gradings SET state = 'failed', finished = ?3, reason = ?4
                     WHERE id = ?1 AND attempts = ?2 AND state = 'grading'",
                    params![id, attempt, now(), reason],
                )?,
            };
            Ok(n == 1)
        })
    }

    /// Sets a trainer's points and comment on a manually graded cell.
    pub fn set_manual_grade(
        &self,
        submission: &str,
        grade: &ManualGrade,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO manual_grades (submission, grade_id, points, comment, grader, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![submission, grade.grade_id, grade.points, grade.comment, grade.grader, grade.at],
            )?;
            Ok(())
        })
    }

    pub fn manual_grades(&self, submission: &str) -> Result<Vec<ManualGrade>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT grade_id, points, comment, grader, at FROM manual_grades
                 WHERE submission = ?1 ORDER BY grade_id",
            )?;
            let rows = stmt
                .query_map(params![submission], |r| {
                    Ok(ManualGrade {
                        grade_id: r.get(0)?,
                        points: r.get(1)?,
                        comment: r.get(2)?,
                        grader: r.get(3)?,
                        at: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
#[path = "classroom_tests.rs"]
mod tests;
