//! The people: the paged ops list, enrolment, and (de)activation.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use scheduler::quota::{QuotaConfig, UserLimits, UserQuota, validate_name};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{Account, Role};

use super::quotas::store_quotas;

use super::require_ops;

/// `GET /api/admin/users`: the ops list of users, searched and paged.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// Part of a name, an e-mail or a group (any case).
    pub search: Option<String>,
    pub offset: Option<u64>,
    /// At most 1,000 a page (default: everyone, or 50 a page when the
    /// client asks for pages).
    pub limit: Option<u64>,
    /// The period of `gpu_hours`: `day`, `week` (default) or `month`.
    pub period: Option<scheduler::quota::Period>,
}

/// The media type with which a client asks for pages, as JupyterHub's
/// REST API answers it: `{"items", "_pagination": {offset, limit, total,
/// next}}` instead of a plain list.
const PAGINATION: &str = "application/jupyterhub-pagination+json";

/// The people: e-mail, role, group, state, caps, last seen, running kernels and GPU-hours this period; searched and paged.
///
/// With `Accept: application/jupyterhub-pagination+json` the answer is JupyterHub's page: `{"items", "_pagination": {offset, limit, total, next}}` (50 a page by default).
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin",
    params(
        ("search" = Option<String>, Query, description = "Part of a name, an e-mail or a group (any case)"),
        ("offset" = Option<u64>, Query, description = "Rows to skip"),
        ("limit" = Option<u64>, Query, description = "At most 1,000 a page"),
        ("period" = Option<String>, Query, description = "The period of `gpu_hours`: `day`, `week` (default) or `month`")),
    responses((status = 200, description = "A list of users; with `Accept: application/jupyterhub-pagination+json`, a page `{\"items\", \"_pagination\"}`", body = serde_json::Value)))]
pub async fn list_users(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    query: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    let paged = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(PAGINATION));
    let offset = q.offset.unwrap_or(0);
    let limit = match (q.limit, paged) {
        (Some(l), _) => l.clamp(1, 1000),
        (None, true) => 50,
        (None, false) => u64::MAX,
    };
    let now = chrono::Utc::now();
    let (from, to) = q.period.unwrap_or_default().bounds(now);
    let ms = |t: chrono::DateTime<chrono::Utc>| u64::try_from(t.timestamp_millis()).unwrap_or(0);
    let store = s.store.clone();
    let search = q.search.unwrap_or_default();
    let page = tokio::task::spawn_blocking(move || {
        store.people_page(&search, offset, limit, (ms(from), ms(to).min(ms(now))))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the user list stopped: {e}")))??;
    let mut running: std::collections::HashMap<String, usize> = Default::default();
    for k in s.kernels.all() {
        *running.entry(k.owner()).or_default() += 1;
    }
    let quotas = s.kernels.scheduling().quotas();
    let items: Vec<Value> = page
        .users
        .iter()
        .map(|p| {
            let mut v = user_model(&p.account, &quotas);
            v["last_seen"] = json!(p.last_seen);
            v["kernels"] = json!(running.get(&p.account.name).copied().unwrap_or(0));
            v["gpu_hours"] = json!((p.gpu_hours * 1000.0).round() / 1000.0);
            v
        })
        .collect();
    if !paged {
        return Ok(Json(json!(items)));
    }
    let next = offset.saturating_add(items.len() as u64);
    Ok(Json(json!({
        "items": items,
        "_pagination": {
            "offset": offset,
            "limit": limit,
            "total": page.total,
            "next": (next < page.total).then(|| json!({"offset": next, "limit": limit})),
        },
    })))
}

/// A user as the admin API shows them: e-mail, role, group, whether
/// active, and own caps.
fn user_model(u: &Account, quotas: &QuotaConfig) -> Value {
    json!({
        "name": u.name,
        "email": u.email,
        "role": u.role.as_str(),
        "group": u.group,
        "active": u.deactivated.is_none(),
        "deactivated": u.deactivated,
        "limits": quotas.user(&u.name).map(|q| &q.limits),
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Moves the user to a group; `null` takes them out of any.
    #[serde(default, with = "double_option")]
    pub group: Option<Option<String>>,
    /// Replaces the user's own caps; `null` removes them.
    #[serde(default, with = "double_option")]
    pub limits: Option<Option<UserLimits>>,
    /// `false` deactivates the user (their kernels stop, their queued
    /// starts are cancelled, their tokens and sessions end; their files
    /// stay); `true` lets them sign in again.
    pub active: Option<bool>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Changes a user's group or caps, or deactivates or reactivates them.
///
/// Deactivation stops their kernels, cancels their queued starts and ends their tokens and sessions; their files stay. Only an admin changes an admin.
///
/// For the ops and admin roles.
#[utoipa::path(patch, path = "/api/admin/users/{name}", tag = "admin",
    params(("name" = String, Path, description = "The user's name")),
    request_body(content = Object, description = "Any of `{\"group\": name|null, \"limits\": {…}|null, \"active\": bool}`"),
    responses((status = 200, description = "The user", body = Object)))]
pub async fn patch_user(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    let patch: UserPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid user change: {e}")))?;
    // Everything is checked before anything is written: a refused change
    // changes nothing.
    let target = s
        .store
        .account(&name)?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?}")))?;
    if patch.active.is_some() {
        if name == user.name {
            return Err(ApiError::BadRequest(
                "you cannot deactivate or reactivate yourself".into(),
            ));
        }
        if target.role == Role::Admin && !user.is_admin() {
            return Err(ApiError::Forbidden(
                "only an admin deactivates or reactivates an admin".into(),
            ));
        }
    }
    if let Some(Some(g)) = &patch.group {
        validate_name(g).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    if let Some(Some(limits)) = &patch.limits {
        limits
            .validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    if let Some(group) = &patch.group {
        s.store.set_user_group(&name, group.as_deref())?;
    }
    if let Some(limits) = patch.limits {
        let mut quotas = s.kernels.scheduling().quotas();
        quotas.users.retain(|u| u.name != name);
        if let Some(limits) = limits {
            quotas.put_user(UserQuota {
                name: name.clone(),
                limits,
            });
        }
        store_quotas(&s, quotas)?;
    }
    match patch.active {
        Some(false) => {
            s.store.deactivate_user(&name)?;
            let (kernels, starts) = s.kernels.end_user(&name).await;
            tracing::info!(user = %name, by = %user.name, kernels, starts, "deactivated a user");
        }
        Some(true) if s.store.reactivate_user(&name)? => {
            tracing::info!(user = %name, by = %user.name, "reactivated a user");
        }
        _ => {}
    }
    let u = s
        .store
        .account(&name)?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?}")))?;
    Ok(Json(user_model(&u, &s.kernels.scheduling().quotas())))
}

/// Enrols many people at once, all or nothing (`lab user import` through the API).
///
/// The list is checked whole first and every problem is named by its row; enrolling the same list twice changes nothing. Only an admin adds or changes an admin.
///
/// For the ops and admin roles.
#[utoipa::path(post, path = "/api/admin/users", tag = "admin",
    request_body(content = Object, description = "`{\"users\": [{\"name\", \"email\"?, \"role\"?, \"group\"?}], \"dry_run\"?: bool}`"),
    responses((status = 200, description = "What was (or would be) added, changed and left as it was", body = Object)))]
pub async fn enrol(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    body: axum::body::Bytes,
) -> Result<Json<crate::store::Enrolment>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        users: Vec<crate::store::Person>,
        #[serde(default)]
        dry_run: bool,
    }
    require_ops(&user)?;
    let body: Body = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid list of users: {e}")))?;
    crate::roster::check_list(&body.users)
        .map_err(|e| ApiError::BadRequest(format!("the list is refused, nothing changed: {e}")))?;
    let store = s.store.clone();
    let admin = user.is_admin();
    let report = tokio::task::spawn_blocking(move || {
        // Only an admin makes or changes an admin: what the list would do
        // is known (a dry run) before anything is written.
        if !admin && touches_admins(&store.enrol(&body.users, true)?) {
            return Ok(None);
        }
        store.enrol(&body.users, body.dry_run).map(Some)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("enrolment stopped: {e}")))??
    .ok_or_else(|| {
        ApiError::Forbidden("only an admin adds, changes or makes an admin; nothing changed".into())
    })?;
    if !report.dry_run {
        tracing::info!(by = %user.name, added = report.added.len(), changed = report.changed.len(), "enrolled users");
    }
    Ok(Json(report))
}

/// Whether an enrolment adds an admin, or changes an admin or someone's
/// role to admin.
fn touches_admins(report: &crate::store::Enrolment) -> bool {
    let admin = Some(Role::Admin.as_str().to_owned());
    report.added.iter().any(|a| a.role == Role::Admin)
        || report.changed.iter().any(|(_, changes)| {
            changes
                .iter()
                .any(|c| c.field == "role" && (c.before == admin || c.after == admin))
        })
}
