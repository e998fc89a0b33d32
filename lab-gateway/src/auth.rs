//! Who is calling: a token from the header, the query string or a cookie.
//!
//! Accepted, as Jupyter Server accepts them: `Authorization: token X`,
//! `Authorization: Bearer X`, `?token=X` (also on the websocket URL), and the
//! `lab_token` cookie the web UI sets. Without `--no-auth`, anything else is 401.
//!
//! A cookie is sent by the browser whatever page makes the request, and
//! SameSite=Strict does not tell ports apart: a page served on another port
//! of the same host counts as the same site. So a request authenticated by
//! the cookie that changes something (any method but GET and HEAD) or opens
//! a websocket must come from our own origin: its `Origin` header must name
//! this server (403 otherwise), as Jupyter Server checks for websockets.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Role, User};

/// The authenticated caller.
pub struct AuthUser(pub User);

pub const COOKIE: &str = "lab_token";

/// A token, and whether it came from the cookie (which the browser adds by
/// itself) rather than from the request's own header or URL.
fn token_from(parts: &Parts) -> Option<(String, bool)> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(h) = h.to_str()
    {
        let h = h.trim();
        for scheme in ["token ", "Token ", "Bearer ", "bearer "] {
            if let Some(t) = h.strip_prefix(scheme) {
                return Some((t.trim().to_owned(), false));
            }
        }
    }
    if let Some(q) = parts.uri.query() {
        for pair in q.split('&') {
            if let Some(t) = pair.strip_prefix("token=") {
                return Some((t.to_owned(), false));
            }
        }
    }
    for h in parts.headers.get_all(axum::http::header::COOKIE) {
        if let Ok(h) = h.to_str() {
            for c in h.split(';') {
                if let Some(t) = c.trim().strip_prefix("lab_token=") {
                    return Some((t.to_owned(), true));
                }
            }
        }
    }
    None
}

/// Whether the request's `Origin` names this server (the `Host` it was
/// sent to). A missing `Origin` is not our page's request: browsers send it
/// on every websocket and on every request but GET and HEAD.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|h| h.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// Whether a cookie-authenticated request must prove it comes from our page.
fn needs_origin(parts: &Parts) -> bool {
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let upgrade = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    !safe || upgrade
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
        let (token, from_cookie) = token_from(parts).ok_or(ApiError::Unauthorized)?;
        if from_cookie && needs_origin(parts) && !same_origin(&parts.headers) {
            return Err(ApiError::Forbidden(
                "a request authenticated by the cookie must come from this server's own pages (Origin)".into(),
            ));
        }
        let store = state.store.clone();
        let user = tokio::task::spawn_blocking(move || store.user_for_token(&token))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        user.map(AuthUser).ok_or(ApiError::Unauthorized)
    }
}
