//! Sign-in through OpenID Connect providers (issue 17): the authorization
//! code flow with PKCE, `state` and `nonce`, discovery, and the ID token
//! checked by the `openidconnect` crate (issuer, audience, expiry, nonce,
//! signature against the provider's JWKS; the JWKS is fetched again once
//! when a token names a key it does not hold, so key rotation works).
//!
//! `flow` is the provider side (discovery, the authorization URL, the code
//! exchange, the checked claims); `claims` makes a user of them; this
//! module holds the routes and the logins under way: each is kept here,
//! by its `state`, until its callback comes back once (or 10 minutes pass).

pub mod claims;
mod flow;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::json;

use crate::AppState;
use crate::config::OidcProvider;

pub use flow::Providers;

/// A login under way: what its callback needs to finish it.
struct Pending {
    provider: String,
    verifier: String,
    nonce: String,
    redirect: String,
    started: Instant,
}

/// The cookie that ties a login under way to the browser that started it.
const STATE_COOKIE: &str = "lab_sso_state";

/// How long a browser has to come back from the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// The most logins under way at once (older ones go first).
const PENDING_MAX: usize = 10_000;

/// The providers, the logins under way, and the sessions they made (by
/// the session token's hash: the provider and the ID token, the hint of a
/// sign-out there). Kept in memory only: after a restart, a sign-out ends
/// the session here alone.
#[derive(Default)]
pub struct Sso {
    providers: Providers,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, (String, String)>>,
}

/// The most sign-ins remembered for a sign-out at their provider.
const SESSIONS_MAX: usize = 100_000;

impl Sso {
    pub fn new(providers: Vec<OidcProvider>) -> Sso {
        Sso {
            providers: Providers::new(providers),
            pending: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// Where a browser signing out of `session` goes next, to sign out at
    /// the provider that made it too (back to `back`); none for a session
    /// a provider did not make, or one whose provider has no endpoint.
    pub fn logout_url(&self, session: &str, back: &str) -> Option<String> {
        let (provider, id_token) = self
            .sessions
            .lock()
            .remove(&crate::store::hash_token(session))?;
        self.providers.logout_url(&provider, &id_token, back)
    }

    fn remember(&self, state: String, p: Pending) {
        let mut pending = self.pending.lock();
        pending.retain(|_, p| p.started.elapsed() < PENDING_FOR);
        if pending.len() >= PENDING_MAX
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(state, p);
    }

    /// The login `state` started, once: a second callback with the same
    /// `state` (a replay) finds nothing.
    fn take(&self, state: &str) -> Option<Pending> {
        let p = self.pending.lock().remove(state)?;
        (p.started.elapsed() < PENDING_FOR).then_some(p)
    }
}

/// The OpenID Connect providers the login page offers.
#[utoipa::path(get, path = "/api/login/providers", tag = "login", security(()),
    responses((status = 200, description = "`[{name, display_name, url}]`", body = [Object])))]
pub async fn list(State(s): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(json!(
        s.sso
            .providers
            .all()
            .map(|p| json!({"name": p.name, "display_name": p.display_name,
                            "url": format!("/login/oidc/{}", p.name)}))
            .collect::<Vec<_>>()
    ))
}

/// This server's own URL, as the browser reached it (the provider sends
/// the browser back to it, so it must be one the provider knows).
pub(crate) fn own_url(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    if host.is_empty() || host.contains(['/', '\\', '@', ' ']) {
        return None;
    }
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    Some(format!("{}://{host}", if https { "https" } else { "http" }))
}

/// Starts a sign-in with a provider: a redirect to its login page.
#[utoipa::path(get, path = "/login/oidc/{name}", tag = "login", security(()), params(("name" = String, Path, description = "The provider's name in `[[login.oidc]]`")),
    responses(
        (status = 303, description = "To the provider"),
        (status = 400, description = "A page: the request does not say which address the browser used", content_type = "text/html", body = String),
        (status = 404, description = "A page: no such provider", content_type = "text/html", body = String),
        (status = 502, description = "A page: the provider does not answer", content_type = "text/html", body = String)))]
pub async fn start(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(provider) = s.sso.providers.get(&name) else {
        return page(
            StatusCode::NOT_FOUND,
            "No such sign-in",
            "This server has no such provider.",
        );
    };
    let Some(base) = own_url(&headers) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The request names no host.",
        );
    };
    let redirect = format!("{base}/login/oidc/{name}/callback");
    match s.sso.providers.authorize(provider, &redirect).await {
        Ok(auth) => {
            // The login is this browser's: its callback must carry this
            // cookie too, or a link with someone else's code and state
            // would sign this browser in as them (login CSRF). Lax, as
            // the callback is a navigation from the provider's site.
            let bound = cookie::Cookie::build((STATE_COOKIE, auth.state.clone()))
                .path(format!("/login/oidc/{name}/callback"))
                .http_only(true)
                .same_site(cookie::SameSite::Lax)
                .max_age(cookie::time::Duration::seconds(PENDING_FOR.as_secs() as i64))
                .build()
                .to_string();
            s.sso.remember(
                auth.state,
                Pending {
                    provider: name,
                    verifier: auth.verifier,
                    nonce: auth.nonce,
                    redirect,
                    started: Instant::now(),
                },
            );
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&auth.url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&bound) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            tracing::warn!(provider = %name, error = %e, "cannot start a sign-in");
            page(
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                &format!(
                    "{} cannot be reached just now; try again in a moment.",
                    provider.display_name
                ),
            )
        }
    }
}

#[derive(serde::Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Back from the provider: on success a session, its cookie, and a redirect to the app.
///
/// A refused sign-in gets a page that says why.
#[utoipa::path(get, path = "/login/oidc/{name}/callback", tag = "login", security(()), params(("name" = String, Path, description = "The provider's name in `[[login.oidc]]`"),
        ("code" = Option<String>, Query, description = "The authorization code"),
        ("state" = Option<String>, Query, description = "The state this gateway sent"),
        ("error" = Option<String>, Query, description = "The provider's error"),
        ("error_description" = Option<String>, Query, description = "The provider's words on it")),
    responses(
        (status = 303, description = "To the app, signed in"),
        (status = 403, description = "A page that says why the sign-in was refused", content_type = "text/html", body = String),
        (status = 500, description = "A page: this gateway failed", content_type = "text/html", body = String)))]
pub async fn callback(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let refused = |why: &str| page(StatusCode::FORBIDDEN, "Sign-in refused", why);
    let ours = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .any(|c| c.name() == STATE_COOKIE && Some(c.value()) == q.state.as_deref());
    if !ours {
        return refused(
            "This sign-in was not started in this browser. Start again from the login page.",
        );
    }
    let Some(pending) = q.state.as_deref().and_then(|st| s.sso.take(st)) else {
        return refused(
            "This sign-in is unknown, used already or too old. Start again from the login page.",
        );
    };
    let Some(provider) = s
        .sso
        .providers
        .get(&name)
        .filter(|_| pending.provider == name)
    else {
        return refused(
            "This sign-in is unknown, used already or too old. Start again from the login page.",
        );
    };
    if let Some(error) = q.error {
        let more = q.error_description.unwrap_or_default();
        return refused(&format!("{} said: {error} {more}", provider.display_name));
    }
    let Some(code) = q.code else {
        return refused("The provider sent no code back.");
    };
    let checked = match s
        .sso
        .providers
        .finish(
            provider,
            code,
            &pending.verifier,
            &pending.nonce,
            &pending.redirect,
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(provider = %name, error = %e, "a sign-in was refused");
            return refused(&format!(
                "{} could not be verified: {e}.",
                provider.display_name
            ));
        }
    };
    let identity = match claims::identity(provider, &checked.subject, &checked.claims) {
        Ok(i) => i,
        Err(why) => {
            // Removed from the groups that may sign in: their sessions end too.
            if let Ok(Some(user)) = s.store.identity_user(&name, &checked.subject) {
                let _ = s.store.end_sessions(&user);
            }
            tracing::info!(provider = %name, error = %why, "a sign-in was refused by its claims");
            return refused(&why.to_string());
        }
    };
    let sign_in = crate::store::SignIn {
        provider: &name,
        subject: &identity.subject,
        name: &identity.name,
        email: identity.email.as_deref(),
        role: identity.role,
        group: identity.group.as_ref().map(Option::as_deref),
    };
    let user = match s.store.sign_in(&sign_in) {
        Ok(Ok(user)) => user,
        Ok(Err(why)) => return refused(&why.to_string()),
        Err(e) => {
            tracing::warn!(provider = %name, error = %e, "cannot record a sign-in");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "The sign-in could not be recorded; try again.",
            );
        }
    };
    let policy = s.login;
    let session =
        match s
            .store
            .create_session(&user.name, policy.session_lifetime, policy.session_idle)
        {
            Ok((_, token)) => token,
            Err(e) => {
                tracing::warn!(user = %user.name, error = %e, "cannot make a session");
                return page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sign-in failed",
                    "The session could not be made; try again.",
                );
            }
        };
    {
        let mut sessions = s.sso.sessions.lock();
        if sessions.len() >= SESSIONS_MAX {
            sessions.clear();
        }
        sessions.insert(
            crate::store::hash_token(&session),
            (name.clone(), checked.id_token),
        );
    }
    tracing::info!(provider = %name, user = %user.name, role = user.role.as_str(), "signed in");
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(v) = HeaderValue::from_str(&crate::auth::session_cookie_value(
        &session,
        &headers,
        policy.session_lifetime,
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A small page of our own for a refusal: the browser is not in the app yet.
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><main class=\"sign-in-refused\"><h1>{t}</h1><p class=\"reason\">{m}</p>\
         <p><a href=\"/\">Back to the login page</a></p></main></body></html>",
        t = esc(title),
        m = esc(message)
    );
    (status, Html(body)).into_response()
}
