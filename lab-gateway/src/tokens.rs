//! Personal API tokens over HTTP (issue 17): a user makes tokens for
//! scripts and for `jupyter server --gateway-url`, each with a label and
//! an expiry, sees them (never the token again) with their last use, and
//! revokes them; ops list a user's tokens and sessions and end the
//! sessions. Browser sessions are listed beside the tokens, so a user sees
//! where they are signed in.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{Role, TokenInfo, TokenKind};

/// A user keeps at most this many live API tokens.
const MAX_TOKENS: usize = 100;
/// A token's expiry when its request names none (or the configured
/// longest, if shorter).
const DEFAULT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// The caller's live API tokens and browser sessions (never the tokens themselves).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, description = "The caller's tokens", body = [crate::store::TokenInfo])))]
pub async fn list(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(s.store.tokens_of(&user.name)?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    label: String,
    /// A duration (`30d`, `12h`, `90s`); default 90 days (or the
    /// configured longest, if shorter), at most the configured longest.
    expires_in: Option<String>,
}

/// A new personal API token, shown this once.
///
/// It lasts 90 days unless `expires_in` says otherwise, and at most the configured longest (`[login] token_max_lifetime`).
#[utoipa::path(post, path = "/api/tokens", tag = "tokens",
    request_body(content = Object, description = "`{\"label\": \"…\", \"expires_in\": \"30d\"}` (`expires_in` optional)"),
    responses((status = 201, description = "The token's entry and, this once, `token`", body = Object)))]
pub async fn create(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"label\": \"…\", \"expires_in\": \"30d\"}}: {e}"
        ))
    })?;
    let label = new.label.trim().to_owned();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "a token's label is 1 to 100 characters, none of them control characters".into(),
        ));
    }
    let longest = s.login.token_max_lifetime;
    let lifetime = match new.expires_in.as_deref() {
        None => DEFAULT_EXPIRY.min(longest),
        Some(asked) => crate::config::parse_duration(asked)
            .map_err(|e| ApiError::BadRequest(format!("expires_in: {e}")))?
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "expires_in: every token expires; give a duration such as 30d".into(),
                )
            })?,
    };
    if lifetime > longest {
        return Err(ApiError::BadRequest(format!(
            "expires_in: at most {} here",
            in_words(longest)
        )));
    }
    let live = s.store.tokens_of(&user.name)?;
    if live.iter().filter(|t| t.kind == TokenKind::Api).count() >= MAX_TOKENS {
        return Err(ApiError::Conflict(format!(
            "you have {MAX_TOKENS} live tokens: revoke one first"
        )));
    }
    let (id, token) = s
        .store
        .create_personal_token(&user.name, &label, lifetime)?;
    let info = s
        .store
        .tokens_of(&user.name)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::Internal("a new token is not live".into()))?;
    tracing::info!(user = %user.name, token_id = %id, "created a personal token");
    let mut body = json!(info);
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)))
}

/// Revokes one of the caller's tokens or sessions.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id, from the list")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.store.revoke_own_token(&user.name, &id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("you have no live token {id:?}")))
    }
}

/// A limit as lab.toml would give it: whole days as days (humantime
/// words 90 days as "2months 29days 2h 52m 48s").
fn in_words(d: std::time::Duration) -> String {
    const DAY: u64 = 24 * 3600;
    let secs = d.as_secs();
    if secs >= DAY && secs.is_multiple_of(DAY) {
        let days = secs / DAY;
        format!("{days} day{}", if days == 1 { "" } else { "s" })
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// A user's live tokens and sessions.
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/users/{name}/tokens", tag = "admin",
    params(("name" = String, Path, description = "The user's name")),
    responses((status = 200, description = "Their tokens", body = [crate::store::TokenInfo])))]
pub async fn of_user(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    crate::admin::require_ops(&user)?;
    if s.store.account(&name)?.is_none() {
        return Err(ApiError::NotFound(format!("no user {name:?}")));
    }
    Ok(Json(s.store.tokens_of(&name)?))
}

/// Ends a user's browser sessions; their API tokens stay.
///
/// For the ops and admin roles.
#[utoipa::path(delete, path = "/api/admin/users/{name}/sessions", tag = "admin",
    params(("name" = String, Path, description = "The user's name")),
    responses((status = 200, description = "`{\"ended\": count}`", body = Object)))]
pub async fn end_sessions(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    crate::admin::require_ops(&user)?;
    let target = s
        .store
        .account(&name)?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?}")))?;
    if target.role == Role::Admin && !user.is_admin() {
        return Err(ApiError::Forbidden(
            "only an admin ends an admin's sessions".into(),
        ));
    }
    let ended = s.store.end_sessions(&name)?;
    tracing::info!(user = %name, by = %user.name, ended, "ended a user's sessions");
    Ok(Json(json!({"ended": ended})))
}
