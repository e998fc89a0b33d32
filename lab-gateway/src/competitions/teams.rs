//! Teams over HTTP: everyone starts as a team of one (joining makes it);
//! a team asks another to merge into it by naming one of its members; the
//! other team accepts (or declines, or the asker withdraws). A merge must
//! pass the rules (`Rules::may_merge`: before the merger deadline, within
//! the team size, and no more counted submissions between them than the
//! daily cap times the days so far), judged on counts read in the merge's
//! own transaction. The merged team's submissions are one team's: its caps,
//! its board row, and its finals, which it picks again.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use chrono::Utc;
use serde_json::{Value, json};

use super::{offload, rules, views, visible};
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{TeamRow, User};

fn my_team(s: &AppState, user: &User, slug: &str) -> Result<TeamRow, ApiError> {
    s.store.team_of(slug, &user.name)?.ok_or_else(|| {
        ApiError::Forbidden(format!(
            "join the competition first (POST /api/competitions/{slug}/join)"
        ))
    })
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("expected {expected}: {e}")))
}

/// The caller's team and its invitations.
///
/// The team (`id`, `name`, `members`) with its `invitations`, each `sent`
/// or `received`. 403 until the caller has joined.
#[utoipa::path(
    get,
    path = "/api/competitions/{slug}/team",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    responses(
        (status = 200, description = "The team, with `invitations`", body = Object)
    )
)]
pub async fn get(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        visible(s, user, &slug)?;
        let team = my_team(s, user, &slug)?;
        let invitations: Vec<Value> = s
            .store
            .invitations(&slug, team.id)?
            .iter()
            .map(|i| {
                json!({
                    "id": i.id,
                    "direction": if i.from_team == team.id { "sent" } else { "received" },
                    "from": i.from_name,
                    "to": i.to_name,
                    "by": i.by_user,
                    "created": i.created,
                })
            })
            .collect();
        let mut v = views::team(&team);
        v["invitations"] = json!(invitations);
        Ok(Json(v))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

/// Rename the caller's team.
///
/// 1 to 60 characters, none of them control characters; 409 when another
/// team has the name.
#[utoipa::path(
    patch,
    path = "/api/competitions/{slug}/team",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    request_body(content = Object, description = "JSON: {\"name\": \"...\"}"),
    responses(
        (status = 200, description = "The team", body = Object)
    )
)]
pub async fn rename(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
    raw: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Rename { name } = body(&raw, "{\"name\": \"...\"}")?;
    offload(&s, &user, move |s, user| {
        visible(s, user, &slug)?;
        let team = my_team(s, user, &slug)?;
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(
                "a team name has 1 to 60 characters, none of them control characters".into(),
            ));
        }
        if !s.store.rename_team(&slug, team.id, &name)? {
            return Err(ApiError::Conflict(format!(
                "another team is called {name:?}"
            )));
        }
        Ok(Json(views::team(&my_team(s, user, &slug)?)))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Invite {
    user: String,
}

/// Ask another team to merge into the caller's.
///
/// The other team is named by one of its members. The rules (merger
/// deadline, team size) are checked now, so a hopeless request is refused
/// at once (409), and again on acceptance. 404 when that user has not
/// joined.
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/team/invitations",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    request_body(content = Object, description = "JSON: {\"user\": NAME}, a member of the team asked"),
    responses(
        (status = 200, description = "`{\"from\", \"to\"}`: the two teams' names", body = Object)
    )
)]
pub async fn invite(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
    raw: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Invite { user: other } = body(&raw, "{\"user\": \"...\"}")?;
    offload(&s, &user, move |s, user| {
        let (row, _) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let mine = my_team(s, user, &slug)?;
        // Someone not in the competition looks like someone who does not exist.
        let theirs = s.store.team_of(&slug, &other)?.ok_or_else(|| {
            ApiError::NotFound(format!("{other:?} has not joined this competition"))
        })?;
        if theirs.id == mine.id {
            return Err(ApiError::Conflict(format!(
                "{other:?} is already on your team"
            )));
        }
        let sizes = (mine.members.len() as u32, theirs.members.len() as u32);
        rules
            .may_merge(Utc::now(), sizes, 0)
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        if !s.store.invite_team(&slug, mine.id, theirs.id, &user.name)? {
            return Err(ApiError::Conflict(format!(
                "your team has already asked {:?}",
                theirs.name
            )));
        }
        Ok(Json(json!({"from": mine.name, "to": theirs.name})))
    })
    .await
}

/// Accept an invitation: the caller's team merges into the inviting one.
///
/// If the rules allow it (409 otherwise): before the merger deadline,
/// within the team size, and no more counted submissions between the
/// teams than the daily cap times the days so far.
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/team/invitations/{id}/accept",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("id" = i64, Path, description = "The invitation's id"),
    ),
    responses(
        (status = 200, description = "The merged team", body = Object)
    )
)]
pub async fn accept(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((slug, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let (row, _) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let mine = my_team(s, user, &slug)?;
        let merged = s
            .store
            .merge_teams(&slug, id, mine.id, |c| {
                rules.may_merge(Utc::now(), c.sizes, c.made)
            })?
            .ok_or_else(|| ApiError::NotFound(format!("no invitation {id} to your team")))?;
        merged.map_err(|e| ApiError::Conflict(format!("the teams cannot merge: {e}")))?;
        tracing::info!(competition = %slug, by = %user.name, invitation = id, "teams merged");
        Ok(Json(views::team(&my_team(s, user, &slug)?)))
    })
    .await
}

/// Withdraw an invitation the caller's team sent, or decline one it got.
#[utoipa::path(
    delete,
    path = "/api/competitions/{slug}/team/invitations/{id}",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("id" = i64, Path, description = "The invitation's id"),
    ),
    responses(
        (status = 204, description = "The invitation is gone")
    )
)]
pub async fn drop(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((slug, id)): Path<(String, i64)>,
) -> Result<axum::http::StatusCode, ApiError> {
    offload(&s, &user, move |s, user| {
        visible(s, user, &slug)?;
        let mine = my_team(s, user, &slug)?;
        if s.store.drop_invitation(&slug, id, mine.id)? {
            Ok(axum::http::StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::NotFound(format!(
                "no invitation {id} of your team"
            )))
        }
    })
    .await
}

/// Leave the caller's team for a team of their own.
///
/// As on Kaggle, only before the merger deadline and while the team has no
/// counted submission (409 otherwise), so nobody walks away with a share
/// of its caps and no score is split.
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/team/leave",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    responses(
        (status = 200, description = "The caller's new team", body = Object)
    )
)]
pub async fn leave(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let (row, _) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let mine = my_team(s, user, &slug)?;
        if Utc::now() >= rules.merger_deadline {
            return Err(ApiError::Conflict(
                "teams are fixed after the merger deadline".into(),
            ));
        }
        s.store
            .leave_team(&slug, mine.id, &user.name)?
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        tracing::info!(competition = %slug, by = %user.name, team = %mine.name, "left a team");
        Ok(Json(views::team(&my_team(s, user, &slug)?)))
    })
    .await
}
