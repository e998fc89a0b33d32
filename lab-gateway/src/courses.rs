//! Courses: notebooks trainers publish for a cohort, read-only to everyone
//! else, who take their own copy to work in.
//!
//! A course is a folder `DATA/courses/<course>`, beside the users' roots and
//! outside every one of them, so the contents API (and a kernel's sandbox)
//! never reaches it; only these routes read it, and only trainers and
//! admins write it. Publishing copies a notebook out of the trainer's own
//! root; taking a copy writes into the engineer's own root.
//!
//! A course belongs to the trainer who first published to it; its owner can
//! name co-trainers, who may publish and unpublish too. Other trainers get a
//! 403 that names the owner; admins may always change a course. Courses
//! published before owners were recorded have none: only admins change them
//! until an admin names an owner (`PUT /api/courses/{course}/owner`), since
//! letting the next trainer who publishes take one over is the hole this closes.

use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::contents::Root;
use crate::error::ApiError;
use crate::store::{CourseStaff, Role, User};

fn courses_root(s: &AppState) -> PathBuf {
    s.users_root.with_file_name("courses")
}

fn may_publish(user: &User) -> Result<(), ApiError> {
    match user.role {
        Role::Trainer | Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only trainers publish notebooks to a course".into(),
        )),
    }
}

/// Checks that `user` may change `course` (publish to or unpublish from
/// it). With `claim`, a trainer publishing to a course that does not exist
/// yet becomes its owner.
fn may_change(s: &AppState, user: &User, course: &str, claim: bool) -> Result<(), ApiError> {
    may_publish(user)?;
    let staff = s.store.course_staff(course)?;
    let exists = courses_root(s).join(course).is_dir();
    match staff {
        Some(staff)
            if user.is_admin()
                || staff.owner == user.name
                || staff.trainers.contains(&user.name) =>
        {
            Ok(())
        }
        Some(staff) => Err(ApiError::Forbidden(format!(
            "course {course:?} belongs to {}: ask them (or an admin) to make you a co-trainer",
            staff.owner
        ))),
        None if exists && !user.is_admin() => Err(legacy(course)),
        None if exists || !claim => Ok(()),
        None => {
            let owner = s.store.claim_course(course, &user.name)?;
            if owner == user.name || user.is_admin() {
                Ok(())
            } else {
                Err(ApiError::Forbidden(format!(
                    "course {course:?} belongs to {owner}: ask them (or an admin) to make you a co-trainer"
                )))
            }
        }
    }
}

/// The refusal for a course published before owners were recorded.
fn legacy(course: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "course {course:?} was published before courses had owners: an admin must name its owner first (PUT /api/courses/{course}/owner)"
    ))
}

/// The course's staff, for managing it: only its owner or an admin.
fn may_manage(s: &AppState, user: &User, course: &str) -> Result<CourseStaff, ApiError> {
    match s.store.course_staff(course)? {
        Some(staff) if user.is_admin() || staff.owner == user.name => Ok(staff),
        Some(staff) => Err(ApiError::Forbidden(format!(
            "only {} (the owner of course {course:?}) or an admin manage its trainers",
            staff.owner
        ))),
        None if courses_root(s).join(course).is_dir() => Err(legacy(course)),
        None => Err(ApiError::NotFound(format!("no course {course:?}"))),
    }
}

fn staff_json(course: &str, staff: Option<&CourseStaff>) -> Value {
    json!({
        "course": course,
        "owner": staff.map(|s| s.owner.clone()),
        "trainers": staff.map(|s| s.trainers.clone()).unwrap_or_default(),
    })
}

/// A user who may be a course's owner or co-trainer: one that exists, and
/// trains or administers.
fn staff_member(s: &AppState, name: &str) -> Result<User, ApiError> {
    let user = s
        .store
        .user(name)?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?}")))?;
    match user.role {
        Role::Trainer | Role::Admin => Ok(user),
        _ => Err(ApiError::BadRequest(format!(
            "{name:?} is not a trainer: only trainers and admins can run a course"
        ))),
    }
}

/// A course or notebook name: one path segment, no dot files.
fn segment<'a>(name: &'a str, what: &str) -> Result<&'a str, ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(name)
    } else {
        Err(ApiError::BadRequest(format!(
            "{what} {name:?} must be one name: no slashes, not starting with a dot"
        )))
    }
}

fn notebook_name(name: &str) -> Result<&str, ApiError> {
    let name = segment(name, "notebook")?;
    if name.ends_with(".ipynb") {
        Ok(name)
    } else {
        Err(ApiError::BadRequest(format!(
            "{name:?} is not a notebook (.ipynb)"
        )))
    }
}

fn modified(path: &FsPath) -> String {
    let t: DateTime<Utc> = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(Into::into)
        .unwrap_or_else(|_| Utc::now());
    crate::timefmt::iso(t)
}

fn read_course_notebook(path: &FsPath) -> Result<Vec<u8>, ApiError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::NotFound("no such notebook".into()),
        _ => ApiError::Internal(e.to_string()),
    })?;
    check_notebook(bytes)
}

/// Only nbformat 4 notebooks are published or copied.
fn check_notebook(bytes: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    let nb: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("not a notebook: {e}")))?;
    if nb["nbformat"].as_u64() != Some(4) {
        return Err(ApiError::BadRequest(
            "only nbformat 4 notebooks are published".into(),
        ));
    }
    Ok(bytes)
}

/// Every course and its published notebooks.
#[utoipa::path(get, path = "/api/courses", tag = "courses",
    responses((status = 200, description = "The courses", body = [Object])))]
pub async fn list(
    State(s): State<AppState>,
    AuthUser(_): AuthUser,
) -> Result<Json<Value>, ApiError> {
    let root = courses_root(&s);
    let mut courses = Vec::new();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Json(json!([])));
    };
    for course in entries.flatten().filter(|e| e.path().is_dir()) {
        let name = course.file_name().to_string_lossy().into_owned();
        let mut notebooks: Vec<Value> = std::fs::read_dir(course.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ipynb"))
            .map(|e| {
                json!({
                    "name": e.file_name().to_string_lossy(),
                    "last_modified": modified(&e.path()),
                })
            })
            .collect();
        notebooks.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let staff = s.store.course_staff(&name)?;
        courses.push(json!({
            "name": name,
            "notebooks": notebooks,
            "owner": staff.as_ref().map(|s| s.owner.clone()),
            "trainers": staff.map(|s| s.trainers).unwrap_or_default(),
        }));
    }
    courses.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(json!(courses)))
}

#[derive(Debug, serde::Deserialize)]
pub struct Publish {
    /// The notebook in the trainer's own root.
    from: String,
}

/// Publishes (or republishes) a notebook of the trainer's in a course.
#[utoipa::path(put, path = "/api/courses/{course}/{notebook}", tag = "courses", params(("course" = String, Path, description = "The course's folder name"), ("notebook" = String, Path, description = "The notebook's file name (`….ipynb`)")),
    request_body(content = Object, description = "`{\"from\": a notebook's path in the trainer's folder}`"),
    responses((status = 200, description = "`{course, name, last_modified}`", body = Object)))]
pub async fn publish(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, notebook)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    may_publish(&user)?;
    let course = segment(&course, "course")?;
    let notebook = notebook_name(&notebook)?;
    let req: Publish = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"from\": PATH}}: {e}")))?;
    may_change(&s, &user, course, true)?;
    let mine = Root::new(s.users_root.join(&user.name))?;
    let bytes = check_notebook(mine.read(&mine.resolve(&req.from)?)?)?;
    let dir = Root::new(courses_root(&s).join(course))?;
    dir.write(&dir.resolve(notebook)?, &bytes)?;
    let target = courses_root(&s).join(course).join(notebook);
    tracing::info!(trainer = %user.name, %course, %notebook, "published");
    Ok(Json(
        json!({"course": course, "name": notebook, "last_modified": modified(&target)}),
    ))
}

/// Unpublishes a notebook.
#[utoipa::path(delete, path = "/api/courses/{course}/{notebook}", tag = "courses", params(("course" = String, Path, description = "The course's folder name"), ("notebook" = String, Path, description = "The notebook's file name (`….ipynb`)")),
    responses((status = 204, description = "Unpublished")))]
pub async fn unpublish(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, notebook)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    may_publish(&user)?;
    let course = segment(&course, "course")?;
    let path = courses_root(&s)
        .join(course)
        .join(notebook_name(&notebook)?);
    may_change(&s, &user, course, false)?;
    std::fs::remove_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::NotFound("no such notebook".into()),
        _ => ApiError::Internal(e.to_string()),
    })?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The caller's own copy of a course notebook.
///
/// It goes to `COURSE/NOTEBOOK` in their folder (or `NAME-1.ipynb`, … if taken).
#[utoipa::path(post, path = "/api/courses/{course}/{notebook}/copy", tag = "courses", params(("course" = String, Path, description = "The course's folder name"), ("notebook" = String, Path, description = "The notebook's file name (`….ipynb`)")),
    responses((status = 201, description = "`{\"path\", \"type\": \"notebook\"}`: where the copy is", body = Object)))]
pub async fn copy(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, notebook)): Path<(String, String)>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let course = segment(&course, "course")?;
    let notebook = notebook_name(&notebook)?;
    let bytes = read_course_notebook(&courses_root(&s).join(course).join(notebook))?;
    let mine = Root::new(s.users_root.join(&user.name))?;
    let target = mine.free_name(&mine.resolve(&format!("{course}/{notebook}"))?);
    mine.write(&target, &bytes)?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({"path": target.api_path(), "type": "notebook"})),
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    user: String,
}

/// An admin gives a course to a trainer.
///
/// For a course from before owners, or one whose owner left.
#[utoipa::path(put, path = "/api/courses/{course}/owner", tag = "courses", params(("course" = String, Path, description = "The course's folder name")),
    request_body(content = Object, description = "`{\"user\": a trainer's name}`"),
    responses((status = 200, description = "The course's staff", body = Object)))]
pub async fn set_owner(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(course): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    if !user.is_admin() {
        return Err(ApiError::Forbidden(
            "only an admin names a course's owner".into(),
        ));
    }
    let course = segment(&course, "course")?;
    let req: Owner = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"user\": NAME}}: {e}")))?;
    if s.store.course_staff(course)?.is_none() && !courses_root(&s).join(course).is_dir() {
        return Err(ApiError::NotFound(format!("no course {course:?}")));
    }
    let owner = staff_member(&s, &req.user)?;
    s.store.set_course_owner(course, &owner.name)?;
    tracing::info!(admin = %user.name, %course, owner = %owner.name, "course owner set");
    Ok(Json(staff_json(
        course,
        s.store.course_staff(course)?.as_ref(),
    )))
}

/// The owner (or an admin) names a co-trainer.
#[utoipa::path(put, path = "/api/courses/{course}/trainers/{user}", tag = "courses", params(("course" = String, Path, description = "The course's folder name"), ("user" = String, Path, description = "The trainer's name")),
    responses((status = 200, description = "The course's staff", body = Object)))]
pub async fn add_trainer(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, trainer)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let course = segment(&course, "course")?;
    let staff = may_manage(&s, &user, course)?;
    let trainer = staff_member(&s, &trainer)?;
    if trainer.name != staff.owner {
        s.store.add_course_trainer(course, &trainer.name)?;
    }
    tracing::info!(by = %user.name, %course, trainer = %trainer.name, "co-trainer added");
    Ok(Json(staff_json(
        course,
        s.store.course_staff(course)?.as_ref(),
    )))
}

/// The owner (or an admin) takes a co-trainer off the course.
#[utoipa::path(delete, path = "/api/courses/{course}/trainers/{user}", tag = "courses", params(("course" = String, Path, description = "The course's folder name"), ("user" = String, Path, description = "The trainer's name")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_trainer(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((course, trainer)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    let course = segment(&course, "course")?;
    may_manage(&s, &user, course)?;
    if !s.store.remove_course_trainer(course, &trainer)? {
        return Err(ApiError::NotFound(format!(
            "{trainer:?} is not a co-trainer of course {course:?}"
        )));
    }
    tracing::info!(by = %user.name, %course, %trainer, "co-trainer removed");
    Ok(axum::http::StatusCode::NO_CONTENT)
}
