//! `/api/sessions`: a notebook's path tied to its kernel, as Jupyter Server
//! keeps them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;

use super::parse_body;

/// The caller's sessions.
#[utoipa::path(get, path = "/api/sessions", tag = "jupyter",
    responses((status = 200, description = "The caller's sessions", body = [crate::openapi::models::Session])))]
pub async fn list_sessions(State(s): State<AppState>, AuthUser(user): AuthUser) -> Json<Value> {
    Json(Value::Array(s.sessions.list(&user, &s.kernels)))
}

/// Ties a notebook's path to a kernel, starting one if needed.
#[utoipa::path(post, path = "/api/sessions", tag = "jupyter",
    request_body(content = Object, description = "`{\"path\", \"name\", \"type\", \"kernel\": {\"name\"} or {\"id\"}}`"),
    responses((status = 201, description = "The session", body = crate::openapi::models::Session)))]
pub async fn create_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let model = s
        .sessions
        .create(&user, &s.kernels, parse_body(&body)?)
        .await?;
    let location = format!("/api/sessions/{}", model["id"].as_str().unwrap_or_default());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(model),
    )
        .into_response())
}

/// One of the caller's sessions.
#[utoipa::path(get, path = "/api/sessions/{id}", tag = "jupyter", params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, description = "The session", body = crate::openapi::models::Session)))]
pub async fn get_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.sessions.get(&user, &id)?))
}

/// Renames a session's notebook or changes its kernel.
#[utoipa::path(patch, path = "/api/sessions/{id}", tag = "jupyter", params(("id" = String, Path, description = "The session's id")),
    request_body(content = Object, description = "Any of `path`, `name`, `type`, `kernel`"),
    responses((status = 200, description = "The session", body = crate::openapi::models::Session)))]
pub async fn patch_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        s.sessions
            .update(&user, &s.kernels, &id, parse_body(&body)?)
            .await?,
    ))
}

/// Ends a session and shuts its kernel down.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "jupyter", params(("id" = String, Path, description = "The session's id")),
    responses((status = 204, description = "Ended")))]
pub async fn delete_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.sessions.delete(&user, &s.kernels, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
