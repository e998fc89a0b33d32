//! An assignment's data files over HTTP: staff upload, list, download and
//! remove them, each released or hidden; engineers list and download the
//! released ones (they also get them with their copy, see `engineer::fetch`).
//! A hidden file is a 404 to everyone but staff, like one that does not exist.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use classroom::{DataPath, Run, Visibility};
use serde_json::{Value, json};

use super::{staff_only, visible};
use crate::AppState;
use crate::auth::AuthUser;
use crate::coursework::data::{self, DataFile};
use crate::error::ApiError;
use crate::store::User;

fn data_path(path: &str) -> Result<DataPath, ApiError> {
    DataPath::parse(path).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// What `user` may have of an assignment's files: staff everything, others
/// what engineers get (and nothing of an unreleased assignment, which
/// `visible` already hides).
fn reach(s: &AppState, user: &User, course: &str, assignment: &str) -> Result<Run, ApiError> {
    let (_, staff) = visible(s, user, course, assignment)?;
    Ok(if staff { Run::Grading } else { Run::Engineer })
}

/// The files `run` may have, as JSON (with their visibility for staff).
pub(crate) fn listing(
    s: &AppState,
    course: &str,
    assignment: &str,
    run: Run,
) -> Result<Value, ApiError> {
    let files: Vec<Value> = data::list(&s.classroom.data(course, assignment))?
        .iter()
        .filter(|f| f.visibility.reaches(run))
        .map(|f| {
            let mut v = DataFile::to_json(f);
            if run == Run::Engineer {
                v.as_object_mut().map(|o| o.remove("hidden"));
            }
            v
        })
        .collect();
    Ok(json!(files))
}

/// The assignment's data files.
///
/// The course's staff see every file, with whether it is `hidden`; others
/// the released ones.
#[utoipa::path(
    get,
    path = "/api/courses/{course}/assignments/{name}/files",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
    ),
    responses(
        (status = 200, description = "Each file's `path` and `size` (and `hidden`, for staff)", body = [Object])
    )
)]
pub async fn list(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let run = reach(s, user, &course, &assignment)?;
        Ok(Json(listing(s, &course, &assignment, run)?))
    })
    .await
}

/// Download one data file.
///
/// A hidden file is a 404 to everyone but the course's staff, like one
/// that does not exist.
#[utoipa::path(
    get,
    path = "/api/courses/{course}/assignments/{name}/files/{*path}",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
        ("path" = String, Path, description = "The file's path among the assignment's data files"),
    ),
    responses(
        (status = 200, description = "The file, as an attachment", content_type = "application/octet-stream", body = String)
    )
)]
pub async fn download(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    super::offload(&s, &user, move |s, user| {
        let run = reach(s, user, &course, &assignment)?;
        let path = data_path(&path)?;
        let bytes =
            data::read(&s.classroom.data(&course, &assignment), &path, run)?.ok_or_else(|| {
                ApiError::NotFound(format!("no data file {path:?} in {course}/{assignment}"))
            })?;
        let name = path.names().last().unwrap_or("data");
        let plain: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{plain}\""),
                ),
            ],
            bytes,
        )
            .into_response())
    })
    .await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutOptions {
    /// Hidden: only gradings get it.
    #[serde(default)]
    hidden: bool,
}

/// Upload a data file.
///
/// The course's staff only. The body is the file. It replaces a file at
/// the same path (moving it to the side asked for). A hidden file
/// (`hidden=true`) only goes to gradings; engineers who already have their
/// copy get a new released file by fetching with `"data_only": true`.
#[utoipa::path(
    put,
    path = "/api/courses/{course}/assignments/{name}/files/{*path}",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
        ("path" = String, Path, description = "The file's path among the assignment's data files"),
        ("hidden" = Option<bool>, Query, description = "Hidden: only gradings get it"),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "The file is stored: its `path`, `hidden` and `size`", body = Object),
        (status = 200, description = "The file replaced one at the same path: its `path`, `hidden` and `size`", body = Object)
    )
)]
pub async fn put(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment, path)): Path<(String, String, String)>,
    Query(q): Query<PutOptions>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::offload(&s, &user, move |s, user| {
        visible(s, user, &course, &assignment)?;
        staff_only(s, user, &course)?;
        let path = data_path(&path)?;
        let visibility = if q.hidden {
            Visibility::Hidden
        } else {
            Visibility::Released
        };
        let dir = s.classroom.data(&course, &assignment);
        let existed = data::list(&dir)?.iter().any(|f| f.path == path);
        data::put(&dir, &path, visibility, &body)?;
        tracing::info!(course, assignment, path = %path, hidden = q.hidden, bytes = body.len(), by = %user.name, "data file put");
        let file = DataFile {
            path,
            visibility,
            size: body.len() as u64,
        };
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((status, Json(file.to_json())))
    })
    .await
}

/// Remove a data file.
///
/// The course's staff only.
#[utoipa::path(
    delete,
    path = "/api/courses/{course}/assignments/{name}/files/{*path}",
    tag = "assignments",
    params(
        ("course" = String, Path, description = "The course's name"),
        ("name" = String, Path, description = "The assignment's name"),
        ("path" = String, Path, description = "The file's path among the assignment's data files"),
    ),
    responses(
        (status = 204, description = "The file is removed")
    )
)]
pub async fn remove(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, assignment, path)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    super::offload(&s, &user, move |s, user| {
        visible(s, user, &course, &assignment)?;
        staff_only(s, user, &course)?;
        let path = data_path(&path)?;
        if data::remove(&s.classroom.data(&course, &assignment), &path)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::NotFound(format!(
                "no data file {path:?} in {course}/{assignment}"
            )))
        }
    })
    .await
}
