//! The engineers' routes: the assignments they can do, their own copy,
//! submitting, and their submissions with grading state and feedback.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use classroom::Notebook;
use serde_json::{Value, json};

use super::{policy, submission_for, views};
use crate::AppState;
use crate::auth::AuthUser;
use crate::contents::Root;
use crate::coursework::files::write_atomic;
use crate::error::ApiError;
use crate::store::SubmissionRow;

/// Every assignment the caller can see, with their own state.
///
/// The released assignments, and the drafts too of the courses the caller
/// teaches (all of them, for an admin). Each has `mine`: the caller's
/// submission window, extension, number of submissions and latest one.
#[utoipa::path(
    get,
    path = "/api/assignments",
    tag = "assignments",
    responses(
        (status = 200, description = "The assignments, each with `mine`", body = [Object])
    )
)]
pub async fn list_all(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| list_in(s, user, None)).await
}

/// One course's assignments the caller can see, with their own state.
///
/// As the list of every assignment, for one course: the released ones, and
/// the drafts too for the course's staff. An unknown course gives an empty
/// list.
#[utoipa::path(
    get,
    path = "/api/courses/{course}/assignments",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
    ),
    responses(
        (status = 200, description = "The assignments, each with `mine`", body = [Object])
    )
)]
pub async fn list(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(course): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| list_in(s, user, Some(&course))).await
}

fn list_in(
    s: &AppState,
    user: &crate::store::User,
    course: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for row in s.store.assignments(course)? {
        let staff = super::is_staff(s, user, &row.course)?;
        if row.released.is_none() && !staff {
            continue;
        }
        let p = policy(&row)?;
        let mut v = views::assignment(&row, &p, None, staff);
        v["mine"] = views::my_state(s, user, &row, &p)?;
        out.push(v);
    }
    Ok(Json(json!(out)))
}

/// One assignment, with the caller's state and its data files.
///
/// Its policy and graded cells, `mine` (the caller's state) and `files`:
/// the released data files, and the hidden ones too for the course's
/// staff. A draft is a 404 to everyone but the course's staff.
#[utoipa::path(
    get,
    path = "/api/courses/{course}/assignments/{name}",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    responses(
        (status = 200, description = "The assignment, with `mine` and `files`", body = Object)
    )
)]
pub async fn get(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (row, staff) = super::visible(s, user, &course, &assignment)?;
        let p = policy(&row)?;
        let source = super::source(s, &course, &assignment)?;
        let mut v = views::assignment(&row, &p, Some(&source), staff);
        v["mine"] = views::my_state(s, user, &row, &p)?;
        let reach = if staff {
            classroom::Run::Grading
        } else {
            classroom::Run::Engineer
        };
        v["files"] = super::data::listing(s, &course, &assignment, reach)?;
        Ok(Json(v))
    })
    .await
}

/// Where an engineer's copy of an assignment lives in their folder.
pub fn copy_path(course: &str, assignment: &str) -> String {
    format!("{course}/{assignment}.ipynb")
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    #[serde(default)]
    overwrite: bool,
    /// Only the released data files the caller lacks; their notebook is
    /// left as it is.
    #[serde(default)]
    data_only: bool,
}

/// Fetch the assignment into the caller's folder.
///
/// The released notebook goes to `COURSE/NAME.ipynb`, and the assignment's
/// released data files beside it (`COURSE/PATH`). An existing copy is kept
/// (409) unless `"overwrite": true`; an existing data file is kept unless
/// `"overwrite": true` too. `"data_only": true` fetches the data files the
/// caller lacks and nothing else (a file the trainer added after they took
/// their copy).
#[utoipa::path(
    post,
    path = "/api/courses/{course}/assignments/{name}/fetch",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    request_body(content = Option<Object>, description = "Optional JSON: {\"overwrite\": bool, \"data_only\": bool}; no body, `null` or `{}` means both false"),
    responses(
        (status = 201, description = "The copy is written: its `path` and `type`, the data `files` written and those `kept` as they were", body = Object),
        (status = 200, description = "With `data_only`: the same, the notebook left as it was", body = Object)
    )
)]
pub async fn fetch(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (row, staff) = super::visible(s, user, &course, &assignment)?;
        if row.released.is_none() && !staff {
            return Err(super::not_found(&course, Some(&assignment)));
        }
        let req: Fetch = super::options(&body, "{\"overwrite\": BOOL, \"data_only\": BOOL}")?;
        let mine = Root::new(s.users_root.join(&user.name))?;
        let target = mine.resolve(&copy_path(&course, &assignment))?;
        if !req.data_only {
            if mine.exists(&target) && !req.overwrite {
                return Err(ApiError::Conflict(format!(
                    "you already have {}: open it, or fetch with \"overwrite\": true to start again",
                    target.api_path()
                )));
            }
            let bytes = std::fs::read(s.classroom.release(&course, &assignment))
                .map_err(|e| ApiError::Internal(format!("the released notebook: {e}")))?;
            mine.write(&target, &bytes)?;
        }
        let (files, kept) = fetch_data(s, &mine, &course, &assignment, req.overwrite && !req.data_only)?;
        let status = if req.data_only { StatusCode::OK } else { StatusCode::CREATED };
        Ok((
            status,
            Json(json!({
                "path": target.api_path(),
                "type": "notebook",
                "files": files,
                "kept": kept,
            })),
        ))
    })
    .await
}

/// Copies the assignment's released data files into `mine` beside the
/// copy (`COURSE/PATH`): the paths written, and those kept as they were.
fn fetch_data(
    s: &AppState,
    mine: &Root,
    course: &str,
    assignment: &str,
    overwrite: bool,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let dir = s.classroom.data(course, assignment);
    let (mut files, mut kept) = (Vec::new(), Vec::new());
    for f in crate::coursework::data::list(&dir)? {
        if !f.visibility.reaches(classroom::Run::Engineer) {
            continue;
        }
        let target = mine.resolve(&format!("{course}/{}", f.path))?;
        if mine.exists(&target) && !overwrite {
            kept.push(target.api_path());
            continue;
        }
        let bytes = crate::coursework::data::read(&dir, &f.path, classroom::Run::Engineer)?
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "the data file {} was just removed: fetch again",
                    f.path
                ))
            })?;
        // A path another assignment of the course made a file (or a
        // folder) is reported as kept, and the rest still come.
        match mine.write(&target, &bytes) {
            Ok(()) => files.push(target.api_path()),
            Err(e) => {
                tracing::info!(path = %target.api_path(), error = %e, "a data file was not fetched");
                kept.push(target.api_path());
            }
        }
    }
    Ok((files, kept))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    /// A notebook in the caller's folder; `COURSE/NAME.ipynb` by default.
    path: Option<String>,
    /// Or the notebook itself.
    notebook: Option<Value>,
}

/// Submit a notebook for grading.
///
/// The caller's notebook (their copy `COURSE/NAME.ipynb` by default,
/// another `path` in their folder, or the `notebook` itself) is copied at
/// once, with the server's time, and queued for grading. Refused before
/// the assignment is released or when its dates no longer take
/// submissions (409; the caller's extension counts), and past the policy's
/// caps (429).
#[utoipa::path(
    post,
    path = "/api/courses/{course}/assignments/{name}/submissions",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    request_body(content = Option<Object>, description = "Optional JSON: {\"path\": PATH} (in the caller's folder) or {\"notebook\": {...}}; no body, `null` or `{}` means the caller's copy"),
    responses(
        (status = 201, description = "The submission, queued for grading", body = Object)
    )
)]
pub async fn submit(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (row, _) = super::visible(s, user, &course, &assignment)?;
        if row.released.is_none() {
            return Err(ApiError::Conflict(format!(
                "assignment {assignment:?} is not released yet"
            )));
        }
        let p = policy(&row)?;
        let now = Utc::now();
        let extension = s
            .store
            .extension(&course, &assignment, &user.name)?
            .map(chrono::Duration::seconds);
        classroom::may_submit(&p.dates, extension, now)
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        let times = |earlier: Vec<String>| -> Vec<_> {
            earlier
                .iter()
                .filter_map(|t| views::parse_time(t))
                .collect()
        };
        // Past a cap, nothing is read or written; the check is made again
        // where the submission is recorded (two submits at once).
        let mine = s
            .store
            .submissions(&course, &assignment, Some(&user.name))?;
        classroom::within_caps(
            &p,
            &times(mine.into_iter().map(|r| r.submitted).collect()),
            now,
        )
        .map_err(|e| ApiError::TooMany(e.to_string()))?;
        let req: Submit = super::options(&body, "{\"path\": PATH} or {\"notebook\": {…}}")?;
        let notebook = read_submitted(s, user, &course, &assignment, req)?;
        let id = uuid::Uuid::new_v4().to_string();
        let stored = notebook.to_bytes();
        write_atomic(&s.classroom.submission(&id), &stored)
            .map_err(|e| ApiError::Internal(format!("cannot store the submission: {e}")))?;
        let sub = SubmissionRow {
            id: id.clone(),
            course: course.clone(),
            assignment: assignment.clone(),
            user_name: user.name.clone(),
            submitted: crate::timefmt::iso(now),
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &stored)),
        };
        let caps = |earlier: &[String]| classroom::within_caps(&p, &times(earlier.to_vec()), now);
        if let Err(refused) = s.store.add_submission_if(&sub, caps)? {
            let _ = std::fs::remove_file(s.classroom.submission(&id));
            return Err(ApiError::TooMany(refused.to_string()));
        }
        s.grader.wake();
        tracing::info!(user = %user.name, %course, %assignment, submission = %id, "submitted");
        Ok((
            StatusCode::CREATED,
            Json(views::submission(s, &sub, false)?),
        ))
    })
    .await
}

/// Run the public tests on a notebook, without submitting it.
///
/// As nbgrader's Validate button: the caller's notebook (their copy by
/// default, another `path` in their folder, or the `notebook` itself) runs
/// against the public tests and the answer is the feedback. Nothing is
/// submitted or recorded. One validation at a time per caller (429 while
/// one runs); 503 when it could not run.
#[utoipa::path(
    post,
    path = "/api/courses/{course}/assignments/{name}/validate",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    request_body(content = Option<Object>, description = "Optional JSON: {\"path\": PATH} (in the caller's folder) or {\"notebook\": {...}}; no body, `null` or `{}` means the caller's copy"),
    responses(
        (status = 200, description = "The feedback of the public tests", body = Object)
    )
)]
pub async fn validate(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let (c, a) = (course.clone(), assignment.clone());
    let (p, notebook) = super::offload(&s, &user, move |s, user| {
        let (row, _) = super::visible(s, user, &c, &a)?;
        let p = policy(&row)?;
        let req: Submit = super::options(&body, "{\"path\": PATH} or {\"notebook\": {…}}")?;
        Ok((p, read_submitted(s, user, &c, &a, req)?))
    })
    .await?;
    let feedback = s
        .grader
        .validate(&user.name, &course, &assignment, &p, &notebook)
        .await
        .map_err(|e| match e {
            crate::coursework::ValidateError::Busy => ApiError::TooMany(e.to_string()),
            crate::coursework::ValidateError::Failed(why) => {
                ApiError::Unavailable(format!("the validation could not run: {why}"))
            }
        })?;
    Ok(Json(json!(feedback)))
}

/// The notebook a submit or validate request names: a path in the
/// caller's folder (their copy by default) or the notebook itself.
fn read_submitted(
    s: &AppState,
    user: &crate::store::User,
    course: &str,
    assignment: &str,
    req: Submit,
) -> Result<Notebook, ApiError> {
    let bytes = super::notebook_bytes(
        s,
        user,
        req.path,
        req.notebook,
        Some(copy_path(course, assignment)),
    )?;
    Notebook::parse(&bytes).map_err(|e| ApiError::BadRequest(format!("not a notebook: {e}")))
}

#[derive(Debug, serde::Deserialize)]
pub struct Whose {
    user: Option<String>,
}

/// The caller's submissions to an assignment, oldest first.
///
/// The course's staff see everyone's, or one user's with `user=NAME`.
#[utoipa::path(
    get,
    path = "/api/courses/{course}/assignments/{name}/submissions",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
        ("user" = Option<String>, Query, description = "Staff: only this user's submissions (ignored for others)"),
    ),
    responses(
        (status = 200, description = "The submissions, oldest first", body = [Object])
    )
)]
pub async fn submissions(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
    Query(q): Query<Whose>,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (_, staff) = super::visible(s, user, &course, &assignment)?;
        let whose = if staff {
            q.user.as_deref()
        } else {
            Some(user.name.as_str())
        };
        let rows = s.store.submissions(&course, &assignment, whose)?;
        let out = rows
            .iter()
            .map(|r| views::submission(s, r, staff))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(json!(out)))
    })
    .await
}

/// One submission: its state, queue position, scores and feedback.
///
/// As the caller may see them: its submitter, and the course's staff; a
/// 404 for anyone else.
#[utoipa::path(
    get,
    path = "/api/submissions/{id}",
    tag = "assignments",
    params(
        ("id" = String, Path, description = "The submission's id"),
    ),
    responses(
        (status = 200, description = "The submission", body = Object)
    )
)]
pub async fn submission(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (row, staff) = submission_for(s, user, &id)?;
        Ok(Json(views::submission(s, &row, staff)?))
    })
    .await
}

/// The notebook as submitted.
///
/// For its submitter and the course's staff; a 404 for anyone else.
#[utoipa::path(
    get,
    path = "/api/submissions/{id}/notebook",
    tag = "assignments",
    params(
        ("id" = String, Path, description = "The submission's id"),
    ),
    responses(
        (status = 200, description = "The notebook (nbformat JSON)", body = Object)
    )
)]
pub async fn submitted_notebook(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let (row, _) = submission_for(s, user, &id)?;
        let bytes = std::fs::read(s.classroom.submission(&row.id))
            .map_err(|e| ApiError::Internal(format!("the submitted notebook: {e}")))?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Json(v))
    })
    .await
}
