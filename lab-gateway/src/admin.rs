//! `/api/admin/…`: what ops staff use to see and share the GPUs.
//!
//! Only the ops and admin roles get in (others get 403). Quotas are edited
//! whole (`/api/admin/quotas`, JSON, TOML or YAML, so ops can keep them in
//! git) or per group and per user; every change goes through
//! [`crate::scheduling::Scheduling::set_quotas`], which stores it and
//! re-runs admission at once.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scheduler::quota::{GroupQuota, QuotaConfig, UserLimits, UserQuota, validate_name};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::ledger::{self, Bucket, By};
use crate::scheduling::now_ms;
use crate::store::{Account, Role, User};

/// 403 unless `user` is ops or an admin.
pub(crate) fn require_ops(user: &User) -> Result<(), ApiError> {
    match user.role {
        Role::Ops | Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden(
            "the admin API is for the ops and admin roles".into(),
        )),
    }
}

/// The inventory, the allocation per pool and group, and the queue.
pub async fn cluster(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    let sched = s.kernels.scheduling();
    let cluster = sched.cluster();
    let snapshot = sched.snapshot(now_ms());
    // Live use of real GPUs (NVML); absent where it cannot be read.
    let used = sched.gpu_use();
    let devices = |p: &scheduler::inventory::Pool| -> Value {
        if !p.real {
            return Value::Null;
        }
        json!(
            p.nodes
                .iter()
                .flat_map(|n| &n.devices)
                .map(|d| {
                    let live = used.iter().find(|u| u.id == d.id);
                    json!({
                        "id": d.id,
                        "memory_mb": d.memory_mb,
                        "utilisation_percent": live.map(|u| u.utilisation_percent),
                        "memory_used_mb": live.map(|u| u.memory_used_mb),
                    })
                })
                .collect::<Vec<_>>()
        )
    };
    Ok(Json(json!({
        "pools": cluster.pools.iter().zip(&snapshot.pools).map(|(p, u)| json!({
            "name": p.name,
            "model": p.model,
            "mig": p.mig,
            "real": p.real,
            "nodes": p.nodes.len(),
            "gpus": u.gpus,
            "free": u.free,
            "compute_capability": p.compute_capability,
            "memory_mb": p.nodes.first().and_then(|n| n.devices.first()).map(|d| d.memory_mb),
            "devices": devices(p),
        })).collect::<Vec<_>>(),
        "utilisation_source": if used.is_empty() { Value::Null } else { json!("nvml") },
        "groups": snapshot.groups,
        "queue": snapshot.queue,
        "reclaiming": snapshot.reclaiming,
    })))
}

pub async fn queue(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    Ok(Json(json!(s.kernels.scheduling().snapshot(now_ms()).queue)))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct FormatQuery {
    pub format: Option<String>,
}

/// Every quota: JSON, or `?format=toml|yaml` for a file to keep in git.
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

/// Replaces every quota. The body is JSON, TOML or YAML, by Content-Type.
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

fn store_quotas(s: &AppState, quotas: QuotaConfig) -> Result<(), ApiError> {
    let events = s.kernels.scheduling().set_quotas(quotas, now_ms())?;
    s.kernels.handle(events);
    Ok(())
}

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

/// Creates or replaces a group's quota. The name comes from the path.
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

/// Users with their e-mail, role, group, state, caps, last request,
/// running kernels and GPU-hours this period; searched and paged.
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

/// Many people at once (`lab user import` through the API): JSON
/// `{"users": [{"name", "email"?, "role"?, "group"?}], "dry_run"?}`. The
/// list is checked whole first; it is applied all or nothing.
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

#[derive(Debug, Default, serde::Deserialize)]
pub struct UsageQuery {
    /// `day` (default) or `week`.
    pub period: Option<Bucket>,
    /// `group` (default) or `user`.
    pub by: Option<By>,
    /// First day, `YYYY-MM-DD` (default: 28 days ago).
    pub from: Option<String>,
    /// Day after the last, `YYYY-MM-DD` (default: tomorrow).
    pub to: Option<String>,
    /// `json` (default), `csv` or `svg`.
    pub format: Option<String>,
}

/// GPU- and CPU-seconds from the ledger, per day or week and group or user.
pub async fn usage(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Query(q): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    require_ops(&user)?;
    let now = now_ms();
    let day = 86_400_000;
    let parse = |v: &Option<String>, default: u64| -> Result<u64, ApiError> {
        match v {
            None => Ok(default),
            Some(d) => ledger::parse_day(d)
                .ok_or_else(|| ApiError::BadRequest(format!("{d:?} is not a date (YYYY-MM-DD)"))),
        }
    };
    let today = now - now % day;
    let from = parse(&q.from, today.saturating_sub(27 * day))?;
    let to = parse(&q.to, today + day)?;
    if to <= from {
        return Err(ApiError::BadRequest("`to` must be after `from`".into()));
    }
    let bucket = q.period.unwrap_or(Bucket::Day);
    let by = q.by.unwrap_or(By::Group);
    let rows = s.store.usage_between(from, to)?;
    let report = ledger::report(&rows, from, to, now, bucket, by);
    Ok(match q.format.as_deref() {
        None | Some("json") => Json(json!(report)).into_response(),
        Some("csv") => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"usage.csv\"",
                ),
            ],
            ledger::csv(&report, by),
        )
            .into_response(),
        Some("svg") => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            ledger::svg(
                &report,
                match bucket {
                    Bucket::Day => "GPU-hours per day",
                    Bucket::Week => "GPU-hours per week",
                },
            ),
        )
            .into_response(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown format {other:?} (json, csv, svg)"
            )));
        }
    })
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
