//! The routes of participants (and everyone who may see a competition):
//! the list, one competition with the caller's team and counts, joining,
//! submitting a CSV, their team's submissions, final selections, the data
//! files and the leaderboards.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use classroom::competition::{self, CapError, Rules, board, rules::next_utc_midnight};
use serde_json::{Value, json};

use super::{offload, rules, views, visible};
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{EntryCounts, EntryKind, EntryRow, EntryState, TeamRow, User};

/// `GET /api/competitions`: every competition the caller may see.
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

/// `GET /api/competitions/{slug}`: the competition, the caller's team and
/// counts, and the data files.
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

/// `GET /api/competitions/{slug}/data/{name}`: a participant file.
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

/// `POST /api/competitions/{slug}/join`: the caller accepts the rules and
/// gets a team of their own (or keeps the one they are on).
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

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    #[serde(default)]
    description: Option<String>,
}

/// A file from the caller's folder: a prediction file (`path`) or a
/// notebook to run (`notebook`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FromFolder {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    notebook: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Refused or failed files a team may send per UTC day: they cost no quota,
/// so this is what bounds them.
const FREE_PER_DAY: u32 = 100;

/// `POST /api/competitions/{slug}/submissions[?description=...]`: the body
/// is the CSV, or JSON `{"path": "...", "description": "..."}` naming one
/// in the caller's folder. Checked, scored on both boards and recorded in
/// one step: 201 with the public score; 422 naming each problem (recorded
/// without its file, costs nothing); 429 when the caps are spent (nothing
/// recorded). JSON `{"notebook": "..."}` names a notebook to run instead
/// (a code submission): stored and queued, 202; see [`submit_code`].
pub async fn submit(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    offload(&s, &user, move |s, user| {
        // The rules and solution read here are the ones the submission is
        // scored against and recorded under: no change overlaps (see `Competitions`).
        let _scoring = s.competitions.scoring();
        let (row, _) = visible(s, user, &slug)?;
        let rules = rules(&row)?;
        let team = s.store.team_of(&slug, &user.name)?.ok_or_else(|| {
            ApiError::Forbidden(format!("join the competition first (POST /api/competitions/{slug}/join)"))
        })?;
        let (bytes, description) = if json_body {
            let from: FromFolder = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("expected {{\"path\": \"...\"}}, {{\"notebook\": \"...\"}} or a CSV body: {e}")))?;
            let description = from.description.or(q.description);
            match (from.path, from.notebook) {
                (Some(path), None) => (read_own(s, user, &path, rules.max_bytes)?, description),
                (None, Some(notebook)) => {
                    return submit_code(s, user, &slug, &rules, &team, &notebook, description);
                }
                _ => return Err(ApiError::BadRequest(
                    "name either a prediction file (\"path\") or a notebook to run (\"notebook\")".into(),
                )),
            }
        } else {
            (body.to_vec(), q.description)
        };
        if !rules.csv {
            return Err(ApiError::BadRequest(
                "this competition takes notebooks only (its test features are hidden): send {\"notebook\": \"PATH\"}".into(),
            ));
        }
        if bytes.len() > rules.max_bytes {
            return Err(ApiError::TooLarge(format!(
                "the file is {} bytes; this competition takes at most {}",
                bytes.len(),
                rules.max_bytes
            )));
        }
        let description = description.unwrap_or_default().chars().take(500).collect::<String>();
        // Nothing to score once the caps are spent: ask before the work (the
        // insert asks again, in its transaction, and that answer counts).
        let now = Utc::now();
        let mut entry = EntryRow {
            id: 0,
            competition: slug.clone(),
            team: team.id,
            user_name: user.name.clone(),
            description,
            file: String::new(),
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
            submitted: crate::timefmt::iso(now),
            day: now.date_naive().to_string(),
            state: EntryState::Scored,
            public_score: None,
            private_score: None,
            error: None,
            selected: false,
            kind: EntryKind::Csv,
            folder: String::new(),
            counted: true,
            attempts: 0,
            deadline: None,
            runtime_min: None,
        };
        if let Err(refused) = caps(&rules, s.store.entry_counts(&slug, team.id, &entry.day)?, true) {
            return Ok(refused.response(None));
        }
        let solution = s.competitions.solution(&row, &rules)?;
        let outcome = competition::submission::read(&bytes, rules.max_bytes, &rules.columns, &rules.metric, &solution)
            .map(|predictions| competition::score(&rules.metric, &solution, &predictions));
        let mut rejection = None;
        match &outcome {
            Ok(Ok(scores)) => {
                entry.public_score = Some(scores.public);
                entry.private_score = Some(scores.private);
                entry.file = format!("{}.csv", uuid::Uuid::new_v4().simple());
                s.competitions
                    .files
                    .write(&s.competitions.files.submission(&slug, &entry.file), &bytes)
                    .map_err(|e| ApiError::Internal(format!("cannot store the submission: {e}")))?;
            }
            Ok(Err(failed)) => {
                entry.state = EntryState::Failed;
                tracing::error!(competition = %slug, board = failed.board, reason = failed.reason, "a valid submission could not be scored");
                entry.error = Some(json!({"message": format!("{failed}; a platform error, which costs you nothing")}).to_string());
            }
            Err(rejected) => {
                entry.state = EntryState::Rejected;
                entry.error = Some(json!({"message": rejected.to_string(), "problems": rejected.problems, "more": rejected.more}).to_string());
                rejection = Some(rejected.clone());
            }
        }
        let state = entry.state;
        entry.counted = state == EntryState::Scored;
        let recorded = s.store.add_entry_if(&entry, |counts| caps(&rules, counts, entry.counted));
        if !matches!(recorded, Ok(Ok(_))) && !entry.file.is_empty() {
            // No row names the file: it goes.
            let _ = std::fs::remove_file(s.competitions.files.submission(&slug, &entry.file));
        }
        let (id, team_now) = match recorded? {
            Ok(recorded) => recorded,
            Err(refused) => return Ok(refused.response(rejection.as_ref())),
        };
        entry.id = id;
        entry.team = team_now;
        let shown = views::entry(&entry, false, rules.decimals, false);
        tracing::info!(competition = %slug, submission = id, user = %user.name, state = ?entry.state, "submission recorded");
        Ok(match (rejection, state) {
            (Some(r), _) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "reason": "Unprocessable Entity",
                    "message": format!("the submission is refused: {r}"),
                    "problems": r.problems,
                    "more": r.more,
                    "submission": shown,
                })),
            )
                .into_response(),
            (None, EntryState::Failed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "reason": "Service Unavailable",
                    "message": "the submission could not be scored, through no fault of yours; it costs you nothing, and staff can see it",
                    "submission": shown,
                })),
            )
                .into_response(),
            (None, _) => (StatusCode::CREATED, Json(shown)).into_response(),
        })
    })
    .await
}

/// Whether a team with `counts` may send one more submission now:
/// within the caps when it will count (`counted`), else within the free
/// ones a day.
fn caps(rules: &Rules, counts: EntryCounts, counted: bool) -> Result<(), Refusal> {
    let at = Utc::now();
    if counted {
        rules
            .may_submit(at, counts.today, counts.total)
            .map_err(Refusal::Cap)
    } else if counts.free_today >= FREE_PER_DAY {
        Err(Refusal::FreeSpent {
            resets_at: next_utc_midnight(at),
        })
    } else {
        rules.may_submit(at, 0, 0).map_err(Refusal::Cap)
    }
}

/// A code submission: the notebook at `path` in the caller's folder is
/// checked (a notebook of a kernel we run), kept, and queued for a run,
/// counted against the caps from now on (a failure of the platform gives
/// it back). 202 with the queued submission; 422 for a file that is not a
/// notebook we can run (nothing recorded, nothing counted); 429 as for a
/// CSV.
fn submit_code(
    s: &AppState,
    user: &User,
    slug: &str,
    rules: &Rules,
    team: &TeamRow,
    path: &str,
    description: Option<String>,
) -> Result<Response, ApiError> {
    if rules.code.is_none() {
        return Err(ApiError::BadRequest(
            "this competition takes prediction files, not notebooks to run".into(),
        ));
    }
    let now = Utc::now();
    let day = now.date_naive().to_string();
    if let Err(refused) = caps(rules, s.store.entry_counts(slug, team.id, &day)?, true) {
        return Ok(refused.response(None));
    }
    let mine = crate::contents::Root::new(s.users_root.join(&user.name))?
        .with_max_file(s.caps.contents_file);
    let inside = mine.resolve(path)?;
    let bytes = mine.read(&inside)?;
    let unrunnable = |why: String| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"reason": "Unprocessable Entity", "message": format!("{path:?} cannot be run: {why}")})),
        )
            .into_response()
    };
    let notebook = match classroom::Notebook::parse(&bytes) {
        Ok(nb) => nb,
        Err(e) => return Ok(unrunnable(e.to_string())),
    };
    if let Err(e) = notebook.language() {
        return Ok(unrunnable(e.to_string()));
    }
    let api_path = inside.api_path();
    let folder = api_path
        .rsplit_once('/')
        .map_or("", |(dir, _)| dir)
        .to_owned();
    let mut entry = EntryRow {
        id: 0,
        competition: slug.to_owned(),
        team: team.id,
        user_name: user.name.clone(),
        description: description.unwrap_or(api_path).chars().take(500).collect(),
        kind: EntryKind::Code,
        file: format!("{}.ipynb", uuid::Uuid::new_v4().simple()),
        folder,
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
        submitted: crate::timefmt::iso(now),
        day,
        state: EntryState::Queued,
        public_score: None,
        private_score: None,
        error: None,
        selected: false,
        counted: true,
        attempts: 0,
        deadline: None,
        runtime_min: None,
    };
    // On disk before the row names it: a queued row always has its notebook.
    let stored = s.competitions.files.submission(slug, &entry.file);
    s.competitions
        .files
        .write(&stored, &bytes)
        .map_err(|e| ApiError::Internal(format!("cannot store the submission: {e}")))?;
    let recorded = s
        .store
        .add_entry_if(&entry, |counts| caps(rules, counts, true));
    if !matches!(recorded, Ok(Ok(_))) {
        let _ = std::fs::remove_file(&stored);
    }
    let (id, team_now) = match recorded? {
        Ok(recorded) => recorded,
        Err(refused) => return Ok(refused.response(None)),
    };
    entry.id = id;
    entry.team = team_now;
    let position = s.store.code_queue_position(slug, id)?;
    s.code_runs.wake();
    tracing::info!(competition = %slug, submission = id, user = %user.name, "code submission queued");
    let mut shown = views::entry(&entry, false, rules.decimals, false);
    shown["position"] = json!(position);
    Ok((StatusCode::ACCEPTED, Json(shown)).into_response())
}

/// Why a submission was not recorded.
enum Refusal {
    /// A cap of the rules, or the competition is closed.
    Cap(CapError),
    /// The team's refused (or failed) files for the UTC day are spent.
    FreeSpent { resets_at: chrono::DateTime<Utc> },
}

impl Refusal {
    /// 429 with the counts and when they reset (409 when closed); a refused
    /// file's problems with it, so the participant can still fix it.
    fn response(&self, problems: Option<&competition::Rejection>) -> Response {
        let mut body = json!({"reason": "Too Many Requests"});
        match self {
            Refusal::Cap(cap) => {
                body["message"] = json!(cap.to_string());
                match cap {
                    CapError::Daily {
                        made,
                        cap,
                        resets_at,
                    } => {
                        body["made"] = json!(made);
                        body["cap"] = json!(cap);
                        body["resets_at"] = json!(crate::timefmt::iso(*resets_at));
                    }
                    CapError::Total { cap } => body["cap"] = json!(cap),
                    CapError::Closed(_) => {
                        body["reason"] = json!("Conflict");
                        return (StatusCode::CONFLICT, Json(body)).into_response();
                    }
                }
            }
            Refusal::FreeSpent { resets_at } => {
                body["message"] = json!(format!(
                    "your team has sent {FREE_PER_DAY} files today that were refused or could not be scored; more are taken from {}",
                    crate::timefmt::iso(*resets_at)
                ));
                body["resets_at"] = json!(crate::timefmt::iso(*resets_at));
            }
        }
        if let Some(r) = problems {
            body["problems"] = json!(r.problems);
            body["more"] = json!(r.more);
        }
        (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
    }
}

/// A file from the caller's own folder, within the competition's size.
fn read_own(s: &AppState, user: &User, path: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    let mine = crate::contents::Root::new(s.users_root.join(&user.name))?
        .with_max_file(s.caps.contents_file.min(max as u64));
    Ok(mine.read(&mine.resolve(path)?)?)
}

/// `GET /api/competitions/{slug}/submissions[?all=true]`: the caller's
/// team's, newest first; staff may ask for everyone's.
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

/// `PUT /api/competitions/{slug}/submissions/{id}/selected` with
/// `{"selected": true}`: a final submission for the private board, up to
/// the rules' number; until the end.
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

/// `GET /api/competitions/{slug}/leaderboard[?board=public|private|shakeup][&format=csv]`.
/// Public for everyone who may see the competition; private and the
/// shake-up for staff, and for everyone once revealed.
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
        let higher = rules.metric.higher_is_better();
        let b = s.competitions.board(&s.store, &slug, higher)?;
        let (scored, names, public) = (&b.scored, &b.names, &b.public);
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
