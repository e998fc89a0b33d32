//! The trainers' routes: import an nbgrader source notebook, set dates and
//! policies, release, publish grades, regrade, grade by hand, extensions,
//! and the gradebook.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use classroom::{Notebook, Policy, Source};
use serde_json::{Value, json};

use super::{may_author, name, policy, staff_only, submission_for, views};
use crate::AppState;
use crate::auth::AuthUser;
use crate::coursework::files::write_atomic;
use crate::error::ApiError;
use crate::store::ManualGrade;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// The source notebook in the trainer's own folder…
    path: Option<String>,
    /// …or the notebook itself.
    notebook: Option<Value>,
    /// Dates, late penalty, limits; an existing assignment keeps its own
    /// when this is left out.
    policy: Option<Policy>,
}

/// Create an assignment from an nbgrader source notebook, or replace its source.
///
/// Trainers and admins only. The source notebook is read from the caller's
/// folder (`path`) or given itself (`notebook`); engineers get its release
/// version. Replacing the source (a fixed test) keeps the assignment's
/// policy unless a new one is given: regrade afterwards. The first
/// assignment of a new course makes the caller its owner; in another's
/// course the caller must be a co-trainer (403).
#[utoipa::path(
    put,
    path = "/api/courses/{course}/assignments/{name}",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    request_body(content = Object, description = "JSON: {\"path\": PATH} or {\"notebook\": {...}}, and optionally \"policy\" (dates, late penalty, limits)"),
    responses(
        (status = 200, description = "The assignment, as staff see it", body = Object)
    )
)]
pub async fn import(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        may_author(user)?;
        let course = name(&course, "course")?;
        let assignment = name(&assignment, "assignment")?;
        let req: Import = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "expected {{\"path\": PATH}} or {{\"notebook\": {{…}}}}, and optionally \"policy\": {e}"
            ))
        })?;
        let bytes = super::notebook_bytes(s, user, req.path, req.notebook, None)?;
        let source = Source::parse(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("not a valid nbgrader source notebook: {e}")))?;
        let owner = s.store.claim_course(course, &user.name)?;
        if owner != user.name {
            let staff = s.store.course_staff(course)?;
            let on_staff = user.is_admin() || staff.is_some_and(|st| st.trainers.contains(&user.name));
            if !on_staff {
                return Err(ApiError::Forbidden(format!(
                    "course {course:?} belongs to {owner}: ask them (or an admin) to make you a co-trainer"
                )));
            }
        }
        let existing = s.store.assignment(course, assignment)?;
        let policy = match (req.policy, &existing) {
            (Some(p), _) => p,
            (None, Some(row)) => policy(row)?,
            (None, None) => Policy::default(),
        };
        policy
            .validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let files = &s.classroom;
        let write = |path: std::path::PathBuf, bytes: &[u8]| {
            write_atomic(&path, bytes)
                .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))
        };
        write(
            files.source(course, assignment),
            &source.notebook().to_bytes(),
        )?;
        write(
            files.release(course, assignment),
            &source.release().to_bytes(),
        )?;
        let policy_json =
            serde_json::to_string(&policy).map_err(|e| ApiError::Internal(e.to_string()))?;
        s.store
            .save_assignment(course, assignment, &policy_json, source.max_score())?;
        tracing::info!(trainer = %user.name, %course, %assignment, cells = source.graded_cells().len(), "assignment imported");
        let row = s
            .store
            .assignment(course, assignment)?
            .ok_or_else(|| ApiError::Internal("the assignment just saved is gone".into()))?;
        Ok(Json(views::assignment(&row, &policy, Some(&source), true)))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    policy: Option<Policy>,
    released: Option<bool>,
    published: Option<bool>,
}

/// Change an assignment's policy, release it, or publish its results.
///
/// The course's staff only. `policy` replaces the dates and policies;
/// `"released": true` shows it to engineers; `"published": true` shows the
/// hidden results when the policy waits for that.
#[utoipa::path(
    patch,
    path = "/api/courses/{course}/assignments/{name}",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    request_body(content = Object, description = "JSON, every field optional: {\"policy\": {...}, \"released\": bool, \"published\": bool}"),
    responses(
        (status = 200, description = "The assignment, as staff see it", body = Object)
    )
)]
pub async fn change(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (row, _) = super::visible(s, user, &course, &assignment)?;
        staff_only(s, user, &course)?;
        let req: Change = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "expected any of \"policy\", \"released\", \"published\": {e}"
            ))
        })?;
        if let Some(p) = &req.policy {
            p.validate()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let json = serde_json::to_string(p).map_err(|e| ApiError::Internal(e.to_string()))?;
            s.store
                .save_assignment(&course, &assignment, &json, row.max_score)?;
        }
        if let Some(r) = req.released {
            s.store.set_released(&course, &assignment, r)?;
        }
        if let Some(p) = req.published {
            s.store.set_published(&course, &assignment, p)?;
        }
        tracing::info!(by = %user.name, %course, %assignment, released = ?req.released, published = ?req.published, "assignment changed");
        let row = s
            .store
            .assignment(&course, &assignment)?
            .ok_or_else(|| super::not_found(&course, Some(&assignment)))?;
        let src = super::source(s, &course, &assignment)?;
        Ok(Json(views::assignment(
            &row,
            &policy(&row)?,
            Some(&src),
            true,
        )))
    })
    .await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regrade {
    /// One submission; all of the assignment's when left out.
    submission: Option<String>,
}

/// Grade again one submission, or every one of the assignment.
///
/// The course's staff only, after a test was fixed for instance. The new
/// gradings are queued; their grades are recorded beside the old.
#[utoipa::path(
    post,
    path = "/api/courses/{course}/assignments/{name}/grade",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    request_body(content = Option<Object>, description = "Optional JSON: {\"submission\": ID}; no body, `null` or `{}` regrades every submission"),
    responses(
        (status = 200, description = "`queued` (how many) and `gradings` (the queued gradings' ids)", body = Object)
    )
)]
pub async fn regrade(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        super::visible(s, user, &course, &assignment)?;
        staff_only(s, user, &course)?;
        let req: Regrade = super::options(&body, "{\"submission\": ID} or {}")?;
        let subs = s.store.submissions(&course, &assignment, None)?;
        let chosen: Vec<_> = match &req.submission {
            Some(id) => {
                let one: Vec<_> = subs.into_iter().filter(|r| &r.id == id).collect();
                if one.is_empty() {
                    return Err(ApiError::NotFound(format!(
                        "no submission {id:?} of this assignment"
                    )));
                }
                one
            }
            None => subs,
        };
        let mut queued = Vec::new();
        for sub in &chosen {
            queued.push(s.store.queue_grading(&sub.id)?);
        }
        s.grader.wake();
        tracing::info!(by = %user.name, %course, %assignment, n = queued.len(), "regrade queued");
        Ok(Json(json!({"queued": queued.len(), "gradings": queued})))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manual {
    points: f64,
    #[serde(default)]
    comment: String,
}

/// Grade one cell of a submission by hand.
///
/// A trainer of the course grades a free answer (or overrides a graded
/// cell) with a comment; the points are between 0 and the cell's maximum.
#[utoipa::path(
    put,
    path = "/api/submissions/{id}/grades/{grade_id}",
    tag = "assignments",
    params(
        ("id" = String, Path, description = "The submission's id"),
        ("grade_id" = String, Path, description = "The graded cell's nbgrader `grade_id`"),
    ),
    request_body(content = Object, description = "JSON: {\"points\": N, \"comment\": TEXT (optional)}"),
    responses(
        (status = 200, description = "The submission, as staff see it", body = Object)
    )
)]
pub async fn manual_grade(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, grade_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (sub, staff) = submission_for(s, user, &id)?;
        if !staff {
            return Err(ApiError::NotFound(format!("no submission {id:?}")));
        }
        let req: Manual = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "expected {{\"points\": N, \"comment\": TEXT}}: {e}"
            ))
        })?;
        let source = super::source(s, &sub.course, &sub.assignment)?;
        let cell = source
            .graded_cells()
            .iter()
            .find(|c| c.grade_id == grade_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!("no graded cell {grade_id:?} in this assignment"))
            })?;
        if !req.points.is_finite() || req.points < 0.0 || req.points > cell.max_points {
            return Err(ApiError::BadRequest(format!(
                "points must be between 0 and {} for cell {grade_id:?}",
                cell.max_points
            )));
        }
        s.store.set_manual_grade(
            &sub.id,
            &ManualGrade {
                grade_id: grade_id.clone(),
                points: req.points,
                comment: req.comment,
                grader: user.name.clone(),
                at: crate::timefmt::iso(chrono::Utc::now()),
            },
        )?;
        tracing::info!(by = %user.name, submission = %sub.id, %grade_id, points = req.points, "graded by hand");
        Ok(Json(views::submission(s, &sub, true)?))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// Extra time in hours; 0 takes it back.
    hours: f64,
}

/// Give one engineer extra time on an assignment.
///
/// The course's staff only. Between 0 and a year of hours; 0 takes the
/// extension back.
#[utoipa::path(
    put,
    path = "/api/courses/{course}/assignments/{name}/extensions/{user}",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
        ("user" = String, Path, description = "The engineer's user name"),
    ),
    request_body(content = Object, description = "JSON: {\"hours\": N}"),
    responses(
        (status = 200, description = "`{\"user\", \"seconds\"}`: the extension now", body = Object)
    )
)]
pub async fn extension(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment, engineer)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        super::visible(s, user, &course, &assignment)?;
        staff_only(s, user, &course)?;
        let req: Extension = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"hours\": N}}: {e}")))?;
        if !req.hours.is_finite() || !(0.0..=24.0 * 366.0).contains(&req.hours) {
            return Err(ApiError::BadRequest(
                "hours must be between 0 and a year".into(),
            ));
        }
        if s.store.user(&engineer)?.is_none() {
            return Err(ApiError::NotFound(format!("no user {engineer:?}")));
        }
        let seconds = (req.hours * 3600.0).round() as i64;
        s.store
            .set_extension(&course, &assignment, &engineer, seconds)?;
        Ok(Json(json!({"user": engineer, "seconds": seconds})))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
pub struct Format {
    format: Option<String>,
}

/// The assignment's gradebook.
///
/// The course's staff only. One row per engineer who submitted: the
/// counting submission's score per graded cell, total, late penalty, final
/// score and state. `format=csv` gives it as a CSV download.
#[utoipa::path(
    get,
    path = "/api/courses/{course}/assignments/{name}/gradebook",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The gradebook: its cells, rows and progress, or the rows as CSV", content(
            (Object = "application/json"),
            (String = "text/csv"),
        ))
    )
)]
pub async fn gradebook(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    Query(q): Query<Format>,
) -> Result<Response, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (row, _) = super::visible(s, user, &course, &assignment)?;
        staff_only(s, user, &course)?;
        let source = super::source(s, &course, &assignment)?;
        let book = views::gradebook(s, &row, &policy(&row)?, &source)?;
        match q.format.as_deref() {
            Some("csv") => {
                let csv = views::gradebook_csv(&book);
                let filename = format!("{course}-{assignment}-grades.csv");
                Ok((
                    [
                        (
                            axum::http::header::CONTENT_TYPE,
                            "text/csv; charset=utf-8".to_owned(),
                        ),
                        (
                            axum::http::header::CONTENT_DISPOSITION,
                            format!("attachment; filename=\"{filename}\""),
                        ),
                    ],
                    csv,
                )
                    .into_response())
            }
            None | Some("json") => Ok(Json(book).into_response()),
            Some(other) => Err(ApiError::BadRequest(format!(
                "format {other:?}: json or csv"
            ))),
        }
    })
    .await
}

/// The trainer's source notebook.
///
/// The course's staff only.
#[utoipa::path(
    get,
    path = "/api/courses/{course}/assignments/{name}/source",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    responses(
        (status = 200, description = "The nbgrader source notebook (nbformat JSON)", body = Object)
    )
)]
pub async fn source_notebook(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        super::visible(s, user, &course, &assignment)?;
        staff_only(s, user, &course)?;
        let bytes = std::fs::read(s.classroom.source(&course, &assignment))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let nb = Notebook::parse(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Json(nb.to_value().clone()))
    })
    .await
}
