//! `/api/admin/…`: what ops staff use to see and share the GPUs.
//!
//! Only the ops and admin roles get in (others get 403). Quotas are edited
//! whole (`/api/admin/quotas`, JSON, TOML or YAML, so ops can keep them in
//! git) or per group and per user; every change goes through
//! [`crate::scheduling::Scheduling::set_quotas`], which stores it and
//! re-runs admission at once.

mod people;
mod quotas;

pub use people::*;
pub use quotas::*;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::ledger::{self, Bucket, By};
use crate::scheduling::now_ms;
use crate::store::{Role, User};

/// 403 unless `user` is ops or an admin.
pub(crate) fn require_ops(user: &User) -> Result<(), ApiError> {
    match user.role {
        Role::Ops | Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden(
            "the admin API is for the ops and admin roles".into(),
        )),
    }
}

/// The GPU inventory, the allocation per pool and group, and the queue.
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/cluster", tag = "admin",
    responses((status = 200, description = "`inventory`, `pools`, `groups`, `queue`, `reclaiming`", body = Object)))]
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

/// The admission queue, in order.
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/queue", tag = "admin",
    responses((status = 200, description = "The waiting starts, first first", body = [Object])))]
pub async fn queue(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    require_ops(&user)?;
    Ok(Json(json!(s.kernels.scheduling().snapshot(now_ms()).queue)))
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
///
/// For the ops and admin roles.
#[utoipa::path(get, path = "/api/admin/usage", tag = "admin",
    params(
        ("period" = Option<String>, Query, description = "`day` (default) or `week`"),
        ("by" = Option<String>, Query, description = "`group` (default) or `user`"),
        ("from" = Option<String>, Query, description = "First day, `YYYY-MM-DD` (default: 28 days ago)"),
        ("to" = Option<String>, Query, description = "The day after the last, `YYYY-MM-DD` (default: tomorrow)"),
        ("format" = Option<String>, Query, description = "`json` (default), `csv` or `svg` (a chart)")),
    responses((status = 200, description = "The usage rows", content(
        ([Object] = "application/json"), (String = "text/csv"), (String = "image/svg+xml")))))]
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
