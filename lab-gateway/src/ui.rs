//! The web UI: the TypeScript app in `lab-gateway/ui` (built by
//! `scripts/build-ui` into `ui/dist`, which is committed, so building `lab`
//! needs no Node.js), embedded in the binary; and the login routes that set
//! the cookie it authenticates with.
//!
//! Logging in (`POST /api/login` with a token or a one-time login code)
//! creates a browser session: a token of its own, in the cookie, which
//! logout revokes. The cookie is HttpOnly (scripts never see it) and
//! SameSite=Strict (no other site's page can send it, which also keeps other
//! sites from opening our websockets with it).
//!
//! Login CSRF: a link from another site must not log the browser in to an
//! account of that site's choosing. So nothing logs in on a GET: the login
//! URL (`/?code=…`, or `/?token=…`) only opens the app, which takes the code
//! out of the address bar and asks the person to confirm, naming the account;
//! the confirmation is a same-origin JSON `POST /api/login`, which a page
//! elsewhere cannot send (its `Origin` is refused, and a form cannot send
//! JSON).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{cookie_token, session_cookie, session_cookie_value};
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

async fn with_store<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

async fn user_for(s: &AppState, token: String) -> Result<Option<User>, ApiError> {
    with_store(s, move |store| store.user_for_token(&token)).await
}

/// `--no-auth` answers only to a loopback `Host` (DNS rebinding).
fn check_host(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if !s.no_auth {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if host.is_some_and(crate::auth::is_loopback_host) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this server runs with --no-auth and answers only to a loopback Host".into(),
        ))
    }
}

/// The web app.
///
/// A login URL's `?code=` or `?token=` is read by the app, which asks before it logs in; nothing logs in here.
#[utoipa::path(get, path = "/", tag = "service", security(()),
    responses((status = 200, description = "The app's page", content_type = "text/html", body = String)))]
pub async fn index(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_host(&s, &headers)?;
    let mut r = serve(&INDEX, &headers);
    let h = r.headers_mut();
    // Kernel output is sanitised, and shown in sandboxed frames; this is
    // the last line: only our own script runs (and, in those frames, the
    // one that reports their height), and nothing is sent elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&format!(
            "default-src 'self'; script-src 'self' {FRAME_SCRIPT_HASH}; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; \
             base-uri 'none'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'"
        ))
        .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    // The login URL's code must not travel on in a Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(r)
}

/// The CSP source of the one script a sandboxed output frame may run (it
/// posts the frame's height to the app): `scripts/build-ui` writes its hash.
const FRAME_SCRIPT_HASH: &str = include_str!("../ui/dist/frame-script.csp");

/// The app's script and stylesheet.
#[utoipa::path(get, path = "/ui/{file}", tag = "service", security(()),
    params(("file" = String, Path, description = "`app.js` or `app.css`")),
    responses((status = 200, description = "The file", content(
        (String = "text/javascript"), (String = "text/css")))))]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "app.js" => serve(&APP_JS, &headers),
        "app.css" => serve(&APP_CSS, &headers),
        _ => ApiError::NotFound(format!("no UI file {file:?}")).into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct Login {
    token: Option<String>,
    code: Option<String>,
    /// Only say whose the token or code is; log nothing in (the app asks
    /// the person first).
    #[serde(default)]
    check: bool,
}

fn identity(u: &User) -> Value {
    json!({"username": u.name, "role": u.role, "group": u.group})
}

/// Signs a browser in with a token or a one-time login code, and sets its session cookie.
///
/// 401 for a wrong token or a used or expired code. With `"check": true` it only says whose the token is.
#[utoipa::path(post, path = "/api/login", tag = "login", security(()),
    request_body(content = Object, description = "`{\"token\"}` or `{\"code\"}`, and `\"check\": true` to only ask"),
    responses((status = 200, description = "`{\"identity\": {username, role, group}}`; the cookie is set", body = Object)))]
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    check_host(&s, &headers)?;
    // A page elsewhere must not log the browser in (to an account of its
    // choosing); a client without a page sends no Origin.
    if headers.contains_key(header::ORIGIN) && !crate::auth::same_origin(&headers) {
        return Err(ApiError::Forbidden(
            "log in from this server's own page".into(),
        ));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json {
        return Err(ApiError::BadRequest(
            "send {\"token\": \"…\"} or {\"code\": \"…\"} as application/json".into(),
        ));
    }
    let login: Login = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"token\": \"…\"}} or {{\"code\": \"…\"}}: {e}"
        ))
    })?;
    let plain = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric());
    let user = match (login.token, login.code) {
        (Some(token), None) => {
            let token = token.trim().to_owned();
            if !plain(&token) {
                return Err(ApiError::Unauthorized);
            }
            user_for(&s, token).await?
        }
        (None, Some(code)) => {
            let code = code.trim().to_owned();
            if !plain(&code) {
                return Err(ApiError::Unauthorized);
            }
            let redeem = !login.check;
            with_store(&s, move |store| store.login_code_user(&code, redeem)).await?
        }
        _ => {
            return Err(ApiError::BadRequest(
                "send either {\"token\": \"…\"} or {\"code\": \"…\"}".into(),
            ));
        }
    };
    let user = user.ok_or(ApiError::Unauthorized)?;
    if login.check {
        return Ok(Json(json!({"identity": identity(&user)})).into_response());
    }
    let name = user.name.clone();
    let policy = s.login;
    let (_, session) = with_store(&s, move |store| {
        store.create_session(&name, policy.session_lifetime, policy.session_idle)
    })
    .await?;
    let mut r = Json(json!({"identity": identity(&user)})).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session_cookie_value(
            &session,
            &headers,
            policy.session_lifetime,
        ))
        .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(r)
}

/// Who the browser's cookie says the caller is, or `null`.
///
/// Never 401, so the app's first look does not log an error.
#[utoipa::path(get, path = "/api/login", tag = "login", security(()),
    responses((status = 200, description = "`{\"identity\": {username, role, group} or null}`", body = Object)))]
pub async fn whoami(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if s.no_auth {
        check_host(&s, &headers)?;
        return Ok(Json(
            json!({"identity": {"username": "anonymous", "role": "admin", "group": null}}),
        ));
    }
    let user = match cookie_token(&headers) {
        Some(t) => user_for(&s, t).await?,
        None => None,
    };
    Ok(Json(json!({"identity": user.as_ref().map(identity)})))
}

/// Signs the browser out: its session ends and the cookie is cleared.
///
/// For a session an OpenID provider made, `logout_url` is where the browser goes to sign out there too.
#[utoipa::path(post, path = "/api/logout", tag = "login", security(()),
    responses((status = 200, description = "`{\"logout_url\": URL or null}`", body = Object)))]
pub async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if headers.contains_key(header::ORIGIN) && !crate::auth::same_origin(&headers) {
        return Err(ApiError::Forbidden(
            "log out from this server's own page".into(),
        ));
    }
    let mut logout_url = None;
    if let Some(token) = cookie_token(&headers) {
        // A session an OpenID provider made: the browser signs out there too.
        let back = crate::sso::own_url(&headers).map(|b| b + "/");
        logout_url = back.and_then(|back| s.sso.logout_url(&token, &back));
        // Only a browser session: an API token sent as a cookie by a client
        // is the client's to revoke (`lab token revoke`).
        with_store(&s, move |store| store.revoke_session(&token)).await?;
    }
    let mut r = (StatusCode::OK, Json(json!({"logout_url": logout_url}))).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session_cookie("").removal().build().to_string())
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_cookie_keeps_its_attributes() {
        let mut headers = HeaderMap::new();
        let week = crate::config::LoginPolicy::default().session_lifetime;
        let set = session_cookie_value("abc", &headers, week);
        for part in [
            "lab_token=abc",
            "Path=/",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=604800",
        ] {
            assert!(set.contains(part), "{part} missing from {set}");
        }
        assert!(!set.contains("Secure"), "{set}");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(session_cookie_value("abc", &headers, week).contains("; Secure"));
        let cleared = session_cookie("").removal().build().to_string();
        for part in [
            "lab_token=;",
            "Path=/",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=0",
        ] {
            assert!(cleared.contains(part), "{part} missing from {cleared}");
        }
    }
}
