//! Who is calling: a token from the header, the websocket URL or a cookie;
//! and the checks that keep other web pages from acting as the caller.
//!
//! Accepted, as Jupyter Server accepts them: `Authorization: token X`,
//! `Authorization: Bearer X`, `?token=X` on a websocket upgrade only (a
//! browser cannot set headers on a websocket; anywhere else a token in the
//! URL ends up in proxy access logs, so it is refused with a clear reason),
//! and the `lab_token` cookie of a browser session (`/api/login`). Without
//! `--no-auth`, anything else is 401.
//!
//! A cookie is sent by the browser whatever page makes the request, and
//! SameSite=Strict does not tell ports apart: a page served on another port
//! of the same host counts as the same site. So a request authenticated by
//! the cookie that changes something (any method but GET and HEAD) or opens
//! a websocket must come from our own origin: its `Origin` header must name
//! this server (403 otherwise), as Jupyter Server checks for websockets; and
//! a body it sends must be JSON, which a cross-site form cannot send.
//!
//! `--no-auth` (loopback only) has no credential to check, so it checks the
//! page instead: the `Host` must be a loopback name or address (a DNS
//! rebinding page reaches 127.0.0.1 under its own name, and its requests
//! carry that name), and a state-changing request or websocket must carry no
//! foreign `Origin` and no body but JSON.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Role, User};

/// The authenticated caller.
pub struct AuthUser(pub User);

pub const COOKIE: &str = "lab_token";

/// The `Set-Cookie` value of a browser session: `Secure` when a TLS proxy
/// in front says the browser came over HTTPS (lab serve itself speaks
/// plain HTTP), kept for the session's lifetime.
pub fn session_cookie_value(
    token: &str,
    headers: &axum::http::HeaderMap,
    lifetime: std::time::Duration,
) -> String {
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    session_cookie(token)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
        ))
        .secure(https)
        .build()
        .to_string()
}

/// The attributes every `lab_token` cookie has, set or cleared: the whole
/// site, HttpOnly, SameSite=Strict.
pub fn session_cookie(value: &str) -> cookie::CookieBuilder<'static> {
    cookie::Cookie::build((COOKIE, value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
}

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
    if is_upgrade(parts)
        && let Some(t) = query_token(parts)
    {
        return Some((t, false));
    }
    cookie_token(&parts.headers).map(|t| (t, true))
}

/// The `lab_token` cookie's value, if the request carries a non-empty one
/// (the `cookie` crate splits the header; browsers may send several).
pub fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty())
}

/// `?token=` in the request's URL, percent-decoded (`a%2Bb` is `a+b`).
fn query_token(parts: &Parts) -> Option<String> {
    form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn is_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(axum::http::header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Whether `host` (a `Host` header: name or address, maybe a port) is this
/// machine's loopback: `localhost`, `*.localhost` (browsers resolve those
/// to loopback themselves), 127.0.0.0/8 or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request body is JSON, raw bytes (`application/octet-stream`:
/// a file upload), or absent: a cross-site form or a no-CORS `fetch` can
/// send `text/plain`, form or multipart bodies, never these two, which
/// need a CORS preflight that this server never grants.
fn json_or_empty(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
    match headers.get(CONTENT_TYPE) {
        Some(ct) => ct.to_str().is_ok_and(|ct| {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json"
                || essence.ends_with("+json")
                || essence == "application/octet-stream"
        }),
        None => {
            !headers.contains_key(TRANSFER_ENCODING)
                && headers
                    .get(CONTENT_LENGTH)
                    .is_none_or(|l| l.as_bytes() == b"0")
        }
    }
}

const JSON_ONLY: &str = "a request from a browser that changes something must send its body as application/json (or a file as application/octet-stream)";

/// The checks `--no-auth` makes instead of a credential (see the module doc).
fn check_no_auth(parts: &Parts) -> Result<(), ApiError> {
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    if !host.is_some_and(is_loopback_host) {
        return Err(ApiError::Forbidden(format!(
            "this server runs with --no-auth and answers only to a loopback Host (localhost, 127.0.0.1, [::1]), not {:?}",
            host.unwrap_or("")
        )));
    }
    if needs_origin(parts) {
        if parts.headers.contains_key(axum::http::header::ORIGIN) && !same_origin(&parts.headers) {
            return Err(ApiError::Forbidden(
                "this server runs with --no-auth: a request that changes something must come from its own pages (Origin)".into(),
            ));
        }
        if !json_or_empty(&parts.headers) {
            return Err(ApiError::BadRequest(JSON_ONLY.into()));
        }
    }
    Ok(())
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
    !safe || is_upgrade(parts)
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
            check_no_auth(parts)?;
            return Ok(AuthUser(User {
                name: "anonymous".into(),
                role: Role::Admin,
                group: None,
            }));
        }
        let Some((token, from_cookie)) = token_from(parts) else {
            if query_token(parts).is_some() {
                return Err(ApiError::BadRequest(
                    "a token in the URL is accepted only on a websocket upgrade (proxies log URLs): send it as `Authorization: token …`".into(),
                ));
            }
            return Err(ApiError::Unauthorized);
        };
        if from_cookie && needs_origin(parts) {
            if !same_origin(&parts.headers) {
                return Err(ApiError::Forbidden(
                    "a request authenticated by the cookie must come from this server's own pages (Origin)".into(),
                ));
            }
            if !json_or_empty(&parts.headers) {
                return Err(ApiError::BadRequest(JSON_ONLY.into()));
            }
        }
        let store = state.store.clone();
        let user = tokio::task::spawn_blocking(move || store.user_for_token(&token))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        user.map(AuthUser).ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = axum::http::Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_url_token_is_percent_decoded() {
        let p = parts("/api/kernels/x/channels?session_id=s&token=a%2Bb%20c", &[]);
        assert_eq!(query_token(&p).as_deref(), Some("a+b c"));
        assert_eq!(query_token(&parts("/?tokens=x", &[])), None);
        let ws = parts(
            "/api/kernels/x/channels?token=a%2Bb",
            &[("upgrade", "websocket")],
        );
        assert_eq!(token_from(&ws), Some(("a+b".to_owned(), false)));
    }

    #[test]
    fn the_cookie_is_found_among_others_and_an_empty_one_is_none() {
        let p = parts("/", &[("cookie", "_xsrf=1; lab_token=abc ;other=2")]);
        assert_eq!(token_from(&p), Some(("abc".to_owned(), true)));
        let p = parts("/", &[("cookie", "a=1"), ("cookie", "lab_token=def")]);
        assert_eq!(cookie_token(&p.headers).as_deref(), Some("def"));
        let p = parts("/", &[("cookie", "lab_token=; x=1")]);
        assert_eq!(cookie_token(&p.headers), None);
        let p = parts("/", &[("cookie", "not_lab_token=zzz")]);
        assert_eq!(token_from(&p), None);
    }

    #[test]
    fn a_header_token_wins_over_the_cookie() {
        let p = parts(
            "/",
            &[("authorization", "token hdr"), ("cookie", "lab_token=ck")],
        );
        assert_eq!(token_from(&p), Some(("hdr".to_owned(), false)));
    }
}
