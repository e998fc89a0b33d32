//! The routes of participants (and everyone who may see a competition):
//! the list, one competition with the caller's team and counts, joining,
//! their team's submissions, final selections, the data files and the
//! leaderboards. Submitting is `intake`'s.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use classroom::competition::{self, Rules, board, rules::next_utc_midnight};
use serde_json::{Value, json};

use super::{offload, rules, views, visible};
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{EntryState, TeamRow};

/// Every competition the caller may see.
///
/// The published competitions, and the unpublished ones the caller runs
/// (as their creator, or an admin). Each has `joined`: whether the caller
/// is on one of its teams.
#[utoipa::path(
    get,
    path = "/api/competitions",
    tag = "competitions",
    responses(
        (status = 200, description = "The competitions, each with its rules, phase and `joined`", body = [Object])
    )
)]
pub async fn list(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let now = Utc::now();
        let mut out = Vec::new();
        for row in s.store.competitions()? {
            let staff = super::is_staff(&row, user);
            if !staff && row.published.is_none() {
                continue;
            }
            let mut v = views::competition(&row, &rules(&row)?, staff, now);
            v["joined"] = json!(s.store.team_of(&row.slug, &user.name)?.is_some());
            out.push(v);
        }
        Ok(Json(json!(out)))
    })
    .await
}

/// The caller's standing with the caps: made today, in all, and when the
/// day's count resets.
fn counts(s: &AppState, slug: &str, team: &TeamRow, rules: &Rules) -> Result<Value, ApiError> {
    let now = Utc::now();
    let today = now.date_naive().to_string();
    let entries = s.store.entries(slug, Some(team.id))?;
    let counted = entries.iter().filter(|e| e.counted);
    let made_today = counted.clone().filter(|e| e.day == today).count();
    Ok(json!({
        "today": made_today,
        "daily_cap": rules.daily_cap,
        "total": counted.count(),
        "total_cap": rules.total_cap,
        "resets_at": crate::timefmt::iso(next_utc_midnight(now)),
    }))
}

/// One competition, with the caller's team, counts and data files.
///
/// `team` and `submissions` (made today and in all, the caps, and when
/// the day's count resets) once the caller has joined; `data` lists the
/// participant files. Staff also get `hidden_data`, the files only code
/// submissions' runs get. An unpublished competition is a 404 to everyone
/// but its staff.
#[utoipa::path(
    get,
    path = "/api/competitions/{slug}",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    responses(
        (status = 200, description = "The competition, with `team`, `submissions`, `data` (and `hidden_data` for staff)", body = Object)
    )
)]
pub async fn get(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let (row, staff) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let mut v = views::competition(&row, &rules, staff, Utc::now());
        if let Some(team) = s.store.team_of(&slug, &user.name)? {
            v["team"] = views::team(&team);
            v["submissions"] = counts(s, &slug, &team, &rules)?;
        }
        v["data"] = json!(data_files(&s.competitions.files.data_dir(&slug))?);
        if staff {
            v["hidden_data"] = json!(data_files(&s.competitions.files.hidden_dir(&slug))?);
        }
        Ok(Json(v))
    })
    .await
}

fn data_files(dir: &std::path::Path) -> Result<Vec<Value>, ApiError> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ApiError::Internal(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        files.push(json!({"name": name, "size": size}));
    }
    files.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(files)
}

/// Download a participant data file.
///
/// For everyone who may see the competition. Only the participant files
/// are served here, not the hidden ones.
#[utoipa::path(
    get,
    path = "/api/competitions/{slug}/data/{name}",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("name" = String, Path, description = "The file's name"),
    ),
    responses(
        (status = 200, description = "The file, as an attachment", content_type = "application/octet-stream", body = String)
    )
)]
pub async fn download(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((slug, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    offload(&s, &user, move |s, user| {
        visible(s, user, &slug)?;
        let file = super::staff::data_name(&file)?.to_string();
        let bytes = std::fs::read(s.competitions.files.data(&slug, &file)).map_err(|e| match e
            .kind()
        {
            std::io::ErrorKind::NotFound => ApiError::NotFound(format!("no data file {file:?}")),
            _ => ApiError::Internal(e.to_string()),
        })?;
        Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
            ],
            bytes,
        )
            .into_response())
    })
    .await
}

/// Join the competition.
///
/// The caller accepts the rules and gets a team of their own, or keeps
/// the one they are on. Refused once the competition has ended (409).
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/join",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    responses(
        (status = 200, description = "The caller's team: `id`, `name` and `members`", body = Object)
    )
)]
pub async fn join(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let (row, _) = visible(s, user, &slug)?;
        if rules(&row)?.phase(Utc::now()) == competition::Phase::Ended {
            return Err(ApiError::Conflict("the competition has ended".into()));
        }
        let team = s.store.join_competition(&slug, &user.name)?;
        Ok(Json(views::team(&team)))
    })
    .await
}

/// The submissions of the caller's team, newest first.
///
/// Empty until the caller has joined. Staff may ask for every team's with
/// `all=true`. Private scores show to staff, and to everyone once the
/// private board is visible; a queued code submission has its `position`
/// in the run queue.
#[utoipa::path(
    get,
    path = "/api/competitions/{slug}/submissions",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("all" = Option<bool>, Query, description = "Staff: every team's submissions (ignored for others)"),
    ),
    responses(
        (status = 200, description = "The submissions, newest first", body = [Object])
    )
)]
pub async fn entries(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
    Query(q): Query<AllQuery>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let (row, staff) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let show_private = staff || rules.private_visible(Utc::now(), row.revealed.is_some());
        let rows = if q.all && staff {
            s.store.entries(&slug, None)?
        } else {
            match s.store.team_of(&slug, &user.name)? {
                Some(team) => s.store.entries(&slug, Some(team.id))?,
                None => Vec::new(),
            }
        };
        let mut shown = Vec::with_capacity(rows.len());
        for e in &rows {
            let mut v = views::entry(e, show_private, rules.decimals, staff);
            if e.state == EntryState::Queued {
                v["position"] = json!(s.store.code_queue_position(&slug, e.id)?);
            }
            shown.push(v);
        }
        Ok(Json(json!(shown)))
    })
    .await
}

/// Cancel a queued code submission.
///
/// A code submission of the caller's team (of any team, for staff) still
/// waiting for its run is failed with the category `cancelled`, at no
/// cost. A run that started is not stopped (409).
#[utoipa::path(
    delete,
    path = "/api/competitions/{slug}/submissions/{id}",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("id" = i64, Path, description = "The submission's id"),
    ),
    responses(
        (status = 200, description = "The cancelled submission", body = Object)
    )
)]
pub async fn cancel(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((slug, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let (row, staff) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let team = match (staff, s.store.team_of(&slug, &user.name)?) {
            (true, _) => None,
            (false, Some(team)) => Some(team.id),
            (false, None) => return Err(ApiError::NotFound(format!("no submission {id} of your team"))),
        };
        let error = json!({"category": "cancelled", "message": format!("cancelled by {} before its run", user.name)});
        if !s.store.cancel_code_entry(&slug, id, team, &error.to_string())? {
            return match s.store.entry(&slug, id)? {
                Some(e) if team.is_none_or(|t| t == e.team) => Err(ApiError::Conflict(format!(
                    "submission {id} is {}; only a queued one can be cancelled",
                    e.state.as_api()
                ))),
                _ => Err(ApiError::NotFound(format!("no submission {id} of your team"))),
            };
        }
        tracing::info!(competition = %slug, submission = id, by = %user.name, "code submission cancelled");
        let entry = s
            .store
            .entry(&slug, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no submission {id}")))?;
        Ok(Json(views::entry(&entry, staff, rules.decimals, staff)))
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AllQuery {
    #[serde(default)]
    all: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    selected: bool,
}

/// Pick or unpick a final submission for the private board.
///
/// A scored submission of the caller's team, up to the rules' number of
/// `selections` (409 past it); until the competition ends (409 after).
#[utoipa::path(
    put,
    path = "/api/competitions/{slug}/submissions/{id}/selected",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("id" = i64, Path, description = "The submission's id"),
    ),
    request_body(content = Object, description = "JSON: {\"selected\": true|false}"),
    responses(
        (status = 200, description = "`{\"id\", \"selected\"}`", body = Object)
    )
)]
pub async fn select(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path((slug, id)): Path<(String, i64)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let sel: Selection = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"selected\": true|false}}: {e}")))?;
    offload(&s, &user, move |s, user| {
        let (row, _) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        if rules.phase(Utc::now()) == competition::Phase::Ended {
            return Err(ApiError::Conflict(
                "final selections closed at the end".into(),
            ));
        }
        let team = s
            .store
            .team_of(&slug, &user.name)?
            .ok_or_else(|| ApiError::NotFound(format!("no scored submission {id} of your team")))?;
        match s
            .store
            .select_entry(&slug, team.id, id, sel.selected, rules.selections)?
        {
            Ok(()) => Ok(Json(json!({"id": id, "selected": sel.selected}))),
            Err(e @ crate::store::SelectError::NotYours(_)) => {
                Err(ApiError::NotFound(e.to_string()))
            }
            Err(e) => Err(ApiError::Conflict(e.to_string())),
        }
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    #[serde(default)]
    board: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// A leaderboard: the public board, the private one, or the shake-up.
///
/// The public board is for everyone who may see the competition. The
/// private board and the shake-up (each team's move from its public to its
/// private rank) are for staff, and for everyone once the private board is
/// visible (403 before). `format=csv` gives the public or private board as
/// a CSV download; the shake-up is JSON only.
#[utoipa::path(
    get,
    path = "/api/competitions/{slug}/leaderboard",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("board" = Option<String>, Query, description = "`public` (default), `private` or `shakeup`"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
    ),
    responses(
        (status = 200, description = "`{\"board\", \"higher_is_better\", \"rows\"}` with the rows best first, or the rows as CSV", content(
            (Object = "application/json"),
            (String = "text/csv"),
        ))
    )
)]
pub async fn leaderboard(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
    Query(q): Query<BoardQuery>,
) -> Result<Response, ApiError> {
    offload(&s, &user, move |s, user| {
        let (row, staff) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let which = q.board.as_deref().unwrap_or("public");
        if which != "public" && !staff && !rules.private_visible(Utc::now(), row.revealed.is_some())
        {
            return Err(ApiError::Forbidden(
                "the private leaderboard is not revealed yet".into(),
            ));
        }
        if q.format.as_deref() == Some("csv") && which == "shakeup" {
            return Err(ApiError::BadRequest(
                "the shake-up is JSON only; CSV is for the public and private boards".into(),
            ));
        }
        if let Some(other) = q.format.as_deref().filter(|f| *f != "csv" && *f != "json") {
            return Err(ApiError::BadRequest(format!(
                "format {other:?}: csv or json"
            )));
        }
        let higher = rules.metric.higher_is_better();
        let b = s.competitions.board(&s.store, &slug, higher)?;
        let (scored, names, public) = (&b.scored, &b.names, &b.public);
        if which == "public" && q.format.as_deref() != Some("csv") {
            // The answer everyone reads, made once per change of the board.
            let body = b.public_json(rules.decimals, || {
                serde_json::to_vec(&json!({
                    "board": "public",
                    "higher_is_better": higher,
                    "rows": views::standings(public, names, rules.decimals),
                }))
                .unwrap_or_default()
            });
            return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
        let rows = match which {
            "public" => views::standings(public, names, rules.decimals),
            "private" => views::standings(
                &board::private_board(scored, higher, rules.selections as usize),
                names,
                rules.decimals,
            ),
            "shakeup" => {
                let private = board::private_board(scored, higher, rules.selections as usize);
                views::moves(&board::shake_up(public, &private), names)
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "board {other:?}: public, private or shakeup"
                )));
            }
        };
        if q.format.as_deref() == Some("csv") {
            let csv = views::standings_csv(&rows);
            return Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{slug}-{which}.csv\""),
                    ),
                ],
                csv,
            )
                .into_response());
        }
        Ok(Json(json!({"board": which, "higher_is_better": higher, "rows": rows})).into_response())
    })
    .await
}
