//! The REST routes, shaped as Jupyter Server and Kernel Gateway answer them:
//! the root, the caller, health and metrics here; kernels, sessions and
//! contents in their own modules.

mod contents;
mod kernels;
mod sessions;

pub use contents::*;
pub use kernels::*;
pub use sessions::*;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;

/// The gateway's version, as Kernel Gateway answers `/api`.
#[utoipa::path(get, path = "/api", tag = "jupyter", security(()),
    responses((status = 200, description = "`{\"version\"}`", body = Object)))]
pub async fn api_root() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// Since when the gateway runs, its last activity, kernels and connections.
#[utoipa::path(get, path = "/api/status", tag = "jupyter",
    responses((status = 200, description = "`started`, `last_activity`, `kernels`, `warm_pool`, `connections`", body = Object)))]
pub async fn status(State(s): State<AppState>, AuthUser(_): AuthUser) -> Json<Value> {
    let kernels = s.kernels.all();
    let last = kernels
        .iter()
        .map(|k| {
            k.model()["last_activity"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .max()
        .unwrap_or_else(|| s.started.clone());
    Json(json!({
        "started": s.started,
        "last_activity": last,
        "kernels": kernels.len(),
        "warm_pool": s.kernels.pool_counts(),
        "connections": kernels.iter().map(|k| k.model()["connections"].as_u64().unwrap_or(0)).sum::<u64>(),
    }))
}

/// The caller: name, role and quota group, as Jupyter Server's `/api/me`.
#[utoipa::path(get, path = "/api/me", tag = "jupyter",
    responses((status = 200, description = "`{\"identity\": {username, name, display_name, role, group}, \"permissions\": {}}`", body = Object)))]
pub async fn me(AuthUser(user): AuthUser) -> Json<Value> {
    Json(json!({
        "identity": {"username": user.name, "name": user.name, "display_name": user.name,
                     "role": user.role, "group": user.group},
        "permissions": {}
    }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and the backend can start kernels.
///
/// For Kubernetes, its pod watch has listed the pods; 503 with the reason if not.
#[utoipa::path(get, path = "/readyz", tag = "service", security(()),
    responses((status = 200, description = "`ready`", content_type = "text/plain", body = String)))]
pub async fn readyz(State(s): State<AppState>) -> Result<&'static str, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || store.ping())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(format!("the database does not answer: {e}")))?;
    s.kernels
        .launcher_ready()
        .await
        .map_err(ApiError::Unavailable)?;
    Ok("ready")
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

pub(super) fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

/// Prometheus metrics in the OpenMetrics text format.
///
/// Kernels, admission and the queue, GPUs, websockets, grading and scoring.
#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let now = s.kernels.snapshot();
    let replay_bytes = s.channels.replay().total();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.kernels.metrics().render(&now, replay_bytes),
    )
        .into_response()
}
