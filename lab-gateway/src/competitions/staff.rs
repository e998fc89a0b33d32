//! The routes of a competition's staff: create and edit it, upload its
//! participant files and its solution, publish it, reveal the private
//! board, and read every submission.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use classroom::competition::{Rules, Solution, USAGE};
use serde_json::{Value, json};

use super::{may_create, offload, rules, slug, staff_only, views};
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{CompetitionMark, CompetitionRow};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCompetition {
    slug: String,
    title: String,
    #[serde(default)]
    overview: String,
    #[serde(default)]
    rules_text: String,
    rules: Rules,
}

/// The competition as staff see it, read again after a change.
fn staff_view(
    s: &AppState,
    user: &crate::store::User,
    slug: &str,
) -> Result<Json<Value>, ApiError> {
    let row = staff_only(s, user, slug)?;
    Ok(Json(views::competition(
        &row,
        &rules(&row)?,
        true,
        chrono::Utc::now(),
    )))
}

fn checked(rules: &Rules) -> Result<String, ApiError> {
    rules
        .check()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    serde_json::to_string(rules).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Create a competition.
///
/// Trainers, ops and admins only; the caller becomes its staff. It starts
/// unpublished: upload its solution, then publish it. 409 when the slug is
/// taken.
#[utoipa::path(
    post,
    path = "/api/competitions",
    tag = "competitions",
    request_body(content = Object, description = "JSON: {\"slug\", \"title\", \"overview\" (optional), \"rules_text\" (optional), \"rules\": {\"metric\", \"columns\", \"start\", \"merger_deadline\", \"end\", caps, team size, selections, reveal, ...}}"),
    responses(
        (status = 201, description = "The new competition, as staff see it", body = Object)
    )
)]
pub async fn create(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    may_create(&user)?;
    let new: NewCompetition = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{slug, title, overview, rules_text, rules}}: {e}"
        ))
    })?;
    offload(&s, &user, move |s, user| {
        slug(&new.slug)?;
        if new.title.trim().is_empty() {
            return Err(ApiError::BadRequest("a competition needs a title".into()));
        }
        let row = CompetitionRow {
            slug: new.slug.clone(),
            title: new.title,
            overview: new.overview,
            rules_text: new.rules_text,
            rules: checked(&new.rules)?,
            created_by: user.name.clone(),
            solution: None,
            published: None,
            revealed: None,
            created: String::new(),
            updated: String::new(),
        };
        if !s.store.create_competition(&row)? {
            return Err(ApiError::Conflict(format!(
                "competition {:?} already exists",
                new.slug
            )));
        }
        tracing::info!(competition = %new.slug, by = %user.name, "competition created");
        Ok((StatusCode::CREATED, staff_view(s, user, &new.slug)?))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    title: Option<String>,
    overview: Option<String>,
    rules_text: Option<String>,
    rules: Option<Rules>,
}

/// Change a competition's texts and rules.
///
/// Staff only. The metric and the columns are fixed once anyone has
/// submitted (409: their scores would mean something else); a new metric
/// must still fit the solution.
#[utoipa::path(
    patch,
    path = "/api/competitions/{slug}",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    request_body(content = Object, description = "JSON, every field optional: {\"title\", \"overview\", \"rules_text\", \"rules\"}; `rules` replaces the whole rules"),
    responses(
        (status = 200, description = "The competition, as staff see it", body = Object)
    )
)]
pub async fn change(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let change: Change = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{title, overview, rules_text, rules}}: {e}"
        ))
    })?;
    offload(&s, &user, move |s, user| {
        let _changing = s.competitions.changing();
        let mut row = staff_only(s, user, &name)?;
        let old = rules(&row)?;
        if let Some(new) = &change.rules {
            let scoring_changed = new.metric != old.metric || new.columns != old.columns;
            if scoring_changed && !s.store.entries(&name, None)?.is_empty() {
                return Err(ApiError::Conflict(
                    "the metric and columns cannot change once there are submissions".into(),
                ));
            }
            if scoring_changed && row.solution.is_some() {
                let bytes = std::fs::read(s.competitions.files.solution(&name))
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                Solution::parse(&bytes, usize::MAX, &new.columns, &new.metric).map_err(|e| {
                    ApiError::BadRequest(format!("the solution does not fit the new metric: {e}"))
                })?;
            }
            row.rules = checked(new)?;
        }
        if let Some(title) = change.title {
            row.title = title;
        }
        if let Some(overview) = change.overview {
            row.overview = overview;
        }
        if let Some(text) = change.rules_text {
            row.rules_text = text;
        }
        s.store.update_competition(&row)?;
        s.competitions.forget(&name);
        staff_view(s, user, &name)
    })
    .await
}

/// Upload or replace the competition's solution.
///
/// Staff only. The body is the solution CSV (id, target, `Usage`), checked
/// against the metric before it replaces the old one; every scored
/// submission is then rescored against it. Refused once the private board
/// is visible (409). The answer gives row counts and what the rescore
/// changed, never a target.
#[utoipa::path(
    put,
    path = "/api/competitions/{slug}/solution",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    request_body(content = String, content_type = "text/csv", description = "The solution CSV: the id and target columns, and `Usage` (public or private) for each row"),
    responses(
        (status = 200, description = "`rescored` (the rescore's counts), `rows`, `public`, `private` and `usage_column`", body = Object)
    )
)]
pub async fn put_solution(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let _changing = s.competitions.changing();
        let row = staff_only(s, user, &name)?;
        let rules = rules(&row)?;
        if rules.private_visible(chrono::Utc::now(), row.revealed.is_some()) {
            return Err(ApiError::Conflict(
                "the private board is public; the solution is final".into(),
            ));
        }
        let solution = Solution::parse(&body, usize::MAX, &rules.columns, &rules.metric).map_err(|e| {
            ApiError::BadRequest(format!("the solution is refused: {e}"))
        })?;
        s.competitions
            .files
            .write(&s.competitions.files.solution(&name), &body)
            .map_err(|e| ApiError::Internal(format!("cannot store the solution: {e}")))?;
        let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
        s.store.set_competition_solution(&name, &sha)?;
        s.competitions.forget(&name);
        tracing::info!(competition = %name, rows = solution.len(), by = %user.name, "solution stored");
        // Every scored submission is scored again against it.
        let row = staff_only(s, user, &name)?;
        let rescored = super::rescore::rescore_all(&s.store, &s.competitions, &row, &rules)?;
        Ok(Json(json!({
            "rescored": rescored,
            "rows": solution.len(),
            "public": solution.board(classroom::competition::Usage::Public).len(),
            "private": solution.board(classroom::competition::Usage::Private).len(),
            "usage_column": USAGE,
        })))
    })
    .await
}

/// Publish the competition.
///
/// Staff only. Participants can see it and join from then on. It needs a
/// solution first (409).
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/publish",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    responses(
        (status = 200, description = "The competition, as staff see it", body = Object)
    )
)]
pub async fn publish(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let row = staff_only(s, user, &name)?;
        if row.solution.is_none() {
            return Err(ApiError::Conflict(
                "upload the solution before publishing".into(),
            ));
        }
        s.store
            .mark_competition(&name, CompetitionMark::Published)?;
        staff_view(s, user, &name)
    })
    .await
}

/// Reveal the private board to everyone.
///
/// Staff only, and only after the end (409 before).
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/reveal",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    responses(
        (status = 200, description = "The competition, as staff see it", body = Object)
    )
)]
pub async fn reveal(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let row = staff_only(s, user, &name)?;
        let rules = rules(&row)?;
        let now = chrono::Utc::now();
        if now < rules.end {
            return Err(ApiError::Conflict(
                "the private board can be revealed only after the end".into(),
            ));
        }
        s.store.mark_competition(&name, CompetitionMark::Revealed)?;
        tracing::info!(competition = %name, by = %user.name, "private board revealed");
        let row = staff_only(s, user, &name)?;
        Ok(Json(views::competition(&row, &rules, true, now)))
    })
    .await
}

/// A participant data file's name: one plain file name.
pub(crate) fn data_name(name: &str) -> Result<&str, ApiError> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if plain {
        Ok(name)
    } else {
        Err(ApiError::BadRequest(format!(
            "data file name {name:?}: letters, digits, '.', '-' and '_', not starting with '.', at most 200"
        )))
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DataQuery {
    /// A file only code submissions' runs get (the hidden test features).
    #[serde(default)]
    hidden: bool,
}

impl DataQuery {
    fn path(&self, s: &AppState, slug: &str, file: &str) -> std::path::PathBuf {
        if self.hidden {
            s.competitions.files.hidden_dir(slug).join(file)
        } else {
            s.competitions.files.data(slug, file)
        }
    }
}

/// Upload a data file.
///
/// Staff only. The body is the file; one of the same name is replaced.
/// With `hidden=true` it goes only to code submissions' runs (the hidden
/// test features), not to participants.
#[utoipa::path(
    put,
    path = "/api/competitions/{slug}/data/{name}",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("name" = String, Path, description = "The file's name: letters, digits, `.`, `-` and `_`, not starting with `.`, at most 200"),
        ("hidden" = Option<bool>, Query, description = "A hidden file, for code submissions' runs only"),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "The file is stored"),
        (status = 200, description = "The file replaced one of the same name")
    )
)]
pub async fn put_data(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((name, file)): Path<(String, String)>,
    Query(q): Query<DataQuery>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    offload(&s, &user, move |s, user| {
        staff_only(s, user, &name)?;
        let file = data_name(&file)?;
        let path = q.path(s, &name, file);
        let existed = path.exists();
        s.competitions
            .files
            .write(&path, &body)
            .map_err(|e| ApiError::Internal(format!("cannot store {file}: {e}")))?;
        Ok(if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        })
    })
    .await
}

/// Remove a data file.
///
/// Staff only; `hidden=true` removes a hidden one.
#[utoipa::path(
    delete,
    path = "/api/competitions/{slug}/data/{name}",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("name" = String, Path, description = "The file's name"),
        ("hidden" = Option<bool>, Query, description = "The hidden file of that name, not the participant one"),
    ),
    responses(
        (status = 204, description = "The file is removed")
    )
)]
pub async fn remove_data(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((name, file)): Path<(String, String)>,
    Query(q): Query<DataQuery>,
) -> Result<StatusCode, ApiError> {
    offload(&s, &user, move |s, user| {
        staff_only(s, user, &name)?;
        let file = data_name(&file)?;
        match std::fs::remove_file(q.path(s, &name, file)) {
            Ok(()) => Ok(StatusCode::NO_CONTENT),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::NotFound(format!("no data file {file:?}")))
            }
            Err(e) => Err(ApiError::Internal(e.to_string())),
        }
    })
    .await
}
