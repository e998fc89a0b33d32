//! Quotas, whole or per group: read, replaced and checked before they are
//! stored and admission runs again.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scheduler::quota::{GroupQuota, QuotaConfig, validate_name};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::scheduling::now_ms;

use super::require_ops;

#[derive(Debug, Default, serde::Deserialize)]
pub struct FormatQuery {
    pub format: Option<String>,
}

/// Every quota: roles, groups and users' own caps.
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/quotas", tag = "admin",
    params(("format" = Option<String>, Query, description = "`json` (default), `toml` or `yaml`, for a file to keep in git")),
    responses((status = 200, description = "The quotas", content(
        (Object = "application/json"), (String = "application/toml"), (String = "application/yaml")))))]
pub async fn get_quotas(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    require_ops(&user)?;
    let quotas = s.kernels.scheduling().quotas();
    Ok(match q.format.as_deref() {
        None | Some("json") => Json(json!(quotas)).into_response(),
        Some("toml") => (
            [(header::CONTENT_TYPE, "application/toml")],
            quotas.to_toml(),
        )
            .into_response(),
        Some("yaml") => (
            [(header::CONTENT_TYPE, "application/yaml")],
            quotas.to_yaml(),
        )
            .into_response(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown format {other:?} (json, toml, yaml)"
            )));
        }
    })
}

/// Replaces every quota; admission runs again at once.
///
/// The body is JSON, TOML or YAML, by Content-Type, and is checked whole before anything is stored.
///
/// For the ops and admin roles.
#[utoipa::path(put, path = "/api/admin/quotas", tag = "admin",
    request_body(description = "The quotas, as `GET` gives them", content(
        (Object = "application/json"), (String = "application/toml"), (String = "application/yaml"))),
    responses((status = 200, description = "The quotas now", body = Object)))]
pub async fn put_quotas(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?;
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let quotas = if kind.contains("toml") {
        QuotaConfig::from_toml(text).map_err(|e| ApiError::BadRequest(e.to_string()))?
    } else if kind.contains("yaml") {
        QuotaConfig::from_yaml(text).map_err(|e| ApiError::BadRequest(e.to_string()))?
    } else {
        serde_json::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("invalid quotas: {e}")))?
    };
    apply(&s, quotas)
}

fn apply(s: &AppState, quotas: QuotaConfig) -> Result<Json<Value>, ApiError> {
    store_quotas(s, quotas)?;
    Ok(Json(json!(s.kernels.scheduling().quotas())))
}

pub(super) fn store_quotas(s: &AppState, quotas: QuotaConfig) -> Result<(), ApiError> {
    let events = s.kernels.scheduling().set_quotas(quotas, now_ms())?;
    s.kernels.handle(events);
    Ok(())
}

/// The quota groups, with their members and what they use now.
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/groups", tag = "admin",
    responses((status = 200, description = "The groups", body = [Object])))]
pub async fn list_groups(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    let sched = s.kernels.scheduling();
    let snapshot = sched.snapshot(now_ms());
    let users = s.store.users()?;
    let groups: Vec<Value> = sched
        .quotas()
        .groups
        .iter()
        .map(|g| {
            json!({
                "quota": g,
                "members": users.iter().filter(|u| u.group.as_deref() == Some(&g.name)).map(|u| &u.name).collect::<Vec<_>>(),
                "using": snapshot.groups.get(&g.name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!(groups)))
}

/// One quota group.
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/groups/{name}", tag = "admin", params(("name" = String, Path, description = "The group's name (a cohort)")),
    responses((status = 200, description = "The group's quota", body = Object)))]
pub async fn get_group(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    let quotas = s.kernels.scheduling().quotas();
    let g = quotas
        .group(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no group {name:?}")))?;
    Ok(Json(json!(g)))
}

/// Creates or replaces a group's quota; the name comes from the path.
///
/// For the ops and admin roles.
#[utoipa::path(put, path = "/api/admin/groups/{name}", tag = "admin", params(("name" = String, Path, description = "The group's name (a cohort)")),
    request_body(content = Object, description = "The group's quota: `max_gpus`, `gpu_hours`, `period`, `pools`, …"),
    responses((status = 200, description = "The group's quota", body = Object)))]
pub async fn put_group(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    validate_name(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("name".into(), json!(name));
    }
    let group: GroupQuota = serde_json::from_value(v)
        .map_err(|e| ApiError::BadRequest(format!("invalid group quota: {e}")))?;
    group
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut quotas = s.kernels.scheduling().quotas();
    quotas.put_group(group);
    store_quotas(&s, quotas)?;
    get_group(State(s), AuthUser(user), Path(name)).await
}

/// Removes a group's quota.
///
/// For the ops and admin roles.
#[utoipa::path(delete, path = "/api/admin/groups/{name}", tag = "admin", params(("name" = String, Path, description = "The group's name (a cohort)")),
    responses((status = 204, description = "Removed")))]
pub async fn delete_group(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_ops(&user)?;
    let mut quotas = s.kernels.scheduling().quotas();
    let before = quotas.groups.len();
    quotas.groups.retain(|g| g.name != name);
    if quotas.groups.len() == before {
        return Err(ApiError::NotFound(format!("no group {name:?}")));
    }
    store_quotas(&s, quotas)?;
    Ok(StatusCode::NO_CONTENT)
}
