//! Graded exercises over HTTP: trainers import, release and grade
//! assignments of their courses; engineers fetch, submit and read their
//! feedback.
//!
//! Who may do what: a course's staff (its owner and co-trainers, see
//! `courses`) and admins manage its assignments and read every submission
//! and grade; anyone signed in sees released assignments, and their own
//! submissions only. Anything else is a 404, the same as for a submission
//! that does not exist, so ids cannot be probed.
//!
//! `staff` holds the trainers' routes, `engineer` the engineers', `data`
//! the assignment's data files (both sides), `views` turns rows and the
//! `classroom` crate's results into JSON and CSV.

pub mod data;
pub mod engineer;
pub mod staff;
pub mod views;

use classroom::{Policy, Source};

use crate::AppState;
use crate::error::ApiError;
use crate::store::{AssignmentRow, Role, SubmissionRow, User};

/// A course or assignment name: one plain name (letters, digits, `-`, `_`,
/// `.`, not starting with a dot), as user names are.
pub(crate) fn name<'a>(value: &'a str, what: &str) -> Result<&'a str, ApiError> {
    scheduler::quota::validate_name(value)
        .map(|()| value)
        .map_err(|e| ApiError::BadRequest(format!("{what} name: {e}")))
}

/// Whether `user` is on `course`'s staff (or an admin).
pub(crate) fn is_staff(s: &AppState, user: &User, course: &str) -> Result<bool, ApiError> {
    if user.is_admin() {
        return Ok(true);
    }
    Ok(s.store
        .course_staff(course)?
        .is_some_and(|staff| staff.owner == user.name || staff.trainers.contains(&user.name)))
}

/// Staff only; everyone else gets the 404 of a course without it.
pub(crate) fn staff_only(s: &AppState, user: &User, course: &str) -> Result<(), ApiError> {
    if is_staff(s, user, course)? {
        Ok(())
    } else {
        Err(not_found(course, None))
    }
}

pub(crate) fn not_found(course: &str, name: Option<&str>) -> ApiError {
    match name {
        Some(name) => ApiError::NotFound(format!("no assignment {name:?} in course {course:?}")),
        None => ApiError::NotFound(format!("no such assignment in course {course:?}")),
    }
}

/// An assignment as `user` may see it: staff see drafts, others only
/// released ones.
pub(crate) fn visible(
    s: &AppState,
    user: &User,
    course: &str,
    name: &str,
) -> Result<(AssignmentRow, bool), ApiError> {
    let row = s
        .store
        .assignment(course, name)?
        .ok_or_else(|| not_found(course, Some(name)))?;
    let staff = is_staff(s, user, course)?;
    if !staff && row.released.is_none() {
        return Err(not_found(course, Some(name)));
    }
    Ok((row, staff))
}

pub(crate) fn policy(row: &AssignmentRow) -> Result<Policy, ApiError> {
    serde_json::from_str(&row.policy)
        .map_err(|e| ApiError::Internal(format!("assignment {}'s policy: {e}", row.name)))
}

pub(crate) fn source(s: &AppState, course: &str, name: &str) -> Result<Source, ApiError> {
    let bytes = std::fs::read(s.classroom.source(course, name))
        .map_err(|e| ApiError::Internal(format!("assignment {name}'s source: {e}")))?;
    Source::parse(&bytes)
        .map_err(|e| ApiError::Internal(format!("assignment {name}'s source: {e}")))
}

/// A submission as `user` may see it: its submitter and the course's
/// staff; a 404 for anyone else.
pub(crate) fn submission_for(
    s: &AppState,
    user: &User,
    id: &str,
) -> Result<(SubmissionRow, bool), ApiError> {
    let nope = || ApiError::NotFound(format!("no submission {id:?}"));
    let row = s.store.submission(id)?.ok_or_else(nope)?;
    let staff = is_staff(s, user, &row.course)?;
    if row.user_name != user.name && !staff {
        return Err(nope());
    }
    Ok((row, staff))
}

/// A JSON body whose every field is optional: none, `null` and `{}` all
/// mean the defaults.
pub(crate) fn options<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::BadRequest(format!("expected {expected}: {e}")))
}

/// The bytes of a notebook a request names: `path` in the caller's folder
/// (`default_path` when neither is given) or `notebook` itself; read
/// within the contents API's file limit.
pub(crate) fn notebook_bytes(
    s: &AppState,
    user: &User,
    path: Option<String>,
    notebook: Option<serde_json::Value>,
    default_path: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    match (
        path.or(if notebook.is_none() {
            default_path
        } else {
            None
        }),
        notebook,
    ) {
        (Some(path), None) => {
            let mine = crate::contents::Root::new(s.users_root.join(&user.name))?
                .with_max_file(s.caps.contents_file);
            Ok(mine.read(&mine.resolve(&path)?)?)
        }
        (None, Some(nb)) => serde_json::to_vec(&nb).map_err(|e| ApiError::Internal(e.to_string())),
        _ => Err(ApiError::BadRequest(
            "give the notebook as \"path\" (in your folder) or as \"notebook\", one of them".into(),
        )),
    }
}

/// Trainers and admins create assignments.
pub(crate) fn may_author(user: &User) -> Result<(), ApiError> {
    match user.role {
        Role::Trainer | Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only trainers create assignments".into(),
        )),
    }
}

/// Runs a route's work (SQLite, and notebooks read from and written to
/// disk) on the blocking pool, within the caller's share of it (see
/// [`crate::blocking`]): a deadline's flood of submissions and gradebook
/// reads must not stall every websocket on the async workers.
pub(crate) async fn offload<T: Send + 'static>(
    s: &AppState,
    user: &User,
    work: impl FnOnce(&AppState, &User) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (state, who) = (s.clone(), user.clone());
    s.blocking
        .run(&user.name, move || work(&state, &who))
        .await?
}
