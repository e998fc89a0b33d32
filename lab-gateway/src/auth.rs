//! Who is calling: a token from the header, the query string or a cookie.
//!
//! Accepted, as Jupyter Server accepts them: `Authorization: token X`,
//! `Authorization: Bearer X`, `?token=X` (also on the websocket URL), and the
//! `lab_token` cookie the web UI sets. Without `--no-auth`, anything else is 401.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Role, User};

/// The authenticated caller.
pub struct AuthUser(pub User);

pub const COOKIE: &str = "lab_token";

fn token_from(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(h) = h.to_str()
    {
        let h = h.trim();
        for scheme in ["token ", "Token ", "Bearer ", "bearer "] {
            if let Some(t) = h.strip_prefix(scheme) {
                return Some(t.trim().to_owned());
            }
        }
    }
    if let Some(q) = parts.uri.query() {
        for pair in q.split('&') {
            if let Some(t) = pair.strip_prefix("token=") {
                return Some(t.to_owned());
            }
        }
    }
    for h in parts.headers.get_all(axum::http::header::COOKIE) {
        if let Ok(h) = h.to_str() {
            for c in h.split(';') {
                if let Some(t) = c.trim().strip_prefix("lab_token=") {
                    return Some(t.to_owned());
                }
            }
        }
    }
    None
}

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        if state.no_auth {
            return Ok(AuthUser(User {
                name: "anonymous".into(),
                role: Role::Admin,
                group: None,
            }));
        }
        let token = token_from(parts).ok_or(ApiError::Unauthorized)?;
        let store = state.store.clone();
        let user = tokio::task::spawn_blocking(move || store.user_for_token(&token))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        user.map(AuthUser).ok_or(ApiError::Unauthorized)
    }
}
