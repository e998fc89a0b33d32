//! The web UI: the TypeScript app in `lab-gateway/ui` (built by
//! `scripts/build-ui` into `ui/dist`, which is committed, so building `lab`
//! needs no Node.js), embedded in the binary; and the login routes that set
//! the cookie it authenticates with.
//!
//! The cookie is HttpOnly (scripts never see the token) and SameSite=Strict
//! (no other site's page can send it, which also keeps other sites from
//! opening our websockets with it).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::COOKIE;
use crate::error::ApiError;
use crate::store::User;

struct Asset {
    content_type: &'static str,
    raw: &'static [u8],
    gzip: &'static [u8],
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    raw: include_bytes!("../ui/dist/index.html"),
    gzip: include_bytes!("../ui/dist/index.html.gz"),
};
const APP_JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    raw: include_bytes!("../ui/dist/app.js"),
    gzip: include_bytes!("../ui/dist/app.js.gz"),
};
const APP_CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    raw: include_bytes!("../ui/dist/app.css"),
    gzip: include_bytes!("../ui/dist/app.css.gz"),
};

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut r = if gzip {
        (
            [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))],
            asset.gzip,
        )
            .into_response()
    } else {
        asset.raw.into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    // Revalidate each load: the binary, and so the app, may have changed.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[derive(Debug, serde::Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The login cookie; `Secure` when a TLS proxy in front says the browser
/// came over HTTPS (lab serve itself speaks plain HTTP).
fn cookie(token: &str, headers: &HeaderMap) -> String {
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000{secure}")
}

async fn user_for(s: &AppState, token: String) -> Result<Option<User>, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || store.user_for_token(&token))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

/// `/`: the app. With `?token=` (the URL `lab serve` prints), logs in first
/// and redirects to a URL without the token.
pub async fn index(
    State(s): State<AppState>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = q.token.filter(|t| !t.is_empty()) {
        if user_for(&s, token.clone()).await?.is_some() {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie(&token, &headers)).map_err(|_| {
                    ApiError::BadRequest("the token is not a valid cookie value".into())
                })?,
            );
            return Ok(r);
        }
        return Err(ApiError::Unauthorized);
    }
    let mut r = serve(&INDEX, &headers);
    // Kernel output is sanitised before it is shown; this is the second
    // line: only our own script runs, and nothing is sent elsewhere.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; \
             base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    Ok(r)
}

/// `/ui/{file}`: the app's script and stylesheet.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "app.js" => serve(&APP_JS, &headers),
        "app.css" => serve(&APP_CSS, &headers),
        _ => ApiError::NotFound(format!("no UI file {file:?}")).into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /api/login {"token"}`: sets the cookie; 401 for a wrong token.
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // A page elsewhere must not log the browser in (to an account of its
    // choosing); a client without a page sends no Origin.
    if headers.contains_key(header::ORIGIN) && !crate::auth::same_origin(&headers) {
        return Err(ApiError::Forbidden(
            "log in from this server's own page".into(),
        ));
    }
    let login: Login = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"token\": \"…\"}}: {e}")))?;
    let token = login.token.trim().to_owned();
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::Unauthorized);
    }
    let user = user_for(&s, token.clone())
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let mut r =
        Json(json!({"identity": {"username": user.name, "role": user.role, "group": user.group}}))
            .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie(&token, &headers))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(r)
}

/// `GET /api/login`: who the cookie (or token) says the caller is, or
/// `null`; never 401, so the app's first look does not log an error.
pub async fn whoami(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if s.no_auth {
        return Ok(Json(
            json!({"identity": {"username": "anonymous", "role": "admin", "group": null}}),
        ));
    }
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|c| c.trim().strip_prefix("lab_token=").map(str::to_owned));
    let user = match token {
        Some(t) if !t.is_empty() => user_for(&s, t).await?,
        _ => None,
    };
    Ok(Json(
        json!({"identity": user.map(|u| json!({"username": u.name, "role": u.role, "group": u.group}))}),
    ))
}

/// `POST /api/logout`: clears the cookie.
pub async fn logout() -> Response {
    let mut r = (StatusCode::OK, Json(Value::Null)).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("lab_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}
