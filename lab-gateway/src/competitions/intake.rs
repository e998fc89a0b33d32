//! Taking a submission (issue 16): a CSV in the body or from the caller's
//! folder, checked, scored on both boards and recorded in one step; or a
//! notebook from their folder, stored and queued for a code run (`runner`).
//! The caps are asked before the work and again in the insert's transaction,
//! which is the answer that counts.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use classroom::competition::{self, CapError, Rules, rules::next_utc_midnight};
use serde_json::json;

use super::{offload, rules, views, visible};
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{EntryCounts, EntryKind, EntryRow, EntryState, TeamRow, User};

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

/// Make a submission: a prediction file, or a notebook to run.
///
/// The caller must have joined (403). The body is the prediction CSV, or
/// (with `Content-Type: application/json`) `{"path": "..."}` naming one in
/// the caller's folder, with an optional `"description"`. It is checked,
/// scored on both boards and recorded in one step: 201 with the public
/// score. A CSV the checks refuse is recorded without its file and costs
/// nothing: 422 naming each problem. One that could not be scored through
/// no fault of the caller is recorded too, at no cost: 503. A file over
/// the rules' `max_bytes` is a 413.
///
/// JSON `{"notebook": "..."}` names a notebook in the caller's folder to
/// run instead (a code submission, where the rules allow them): stored
/// and queued for a run, 202; a file that is not a notebook we can run is
/// a 422 with nothing recorded.
///
/// When the caps are spent nothing is recorded: 429 with the counts and
/// when they reset (409 once the competition is closed). Files refused or
/// failed are free, within 100 per team per UTC day.
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/submissions",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
        ("description" = Option<String>, Query, description = "The submission's description (at most 500 characters kept); a JSON body's `description` wins"),
    ),
    request_body(description = "The prediction CSV, or JSON: {\"path\": PATH} (a CSV in the caller's folder) or {\"notebook\": PATH} (a notebook to run), each with an optional \"description\"", content(
        (String = "text/csv"),
        (Object = "application/json"),
    )),
    responses(
        (status = 201, description = "Scored and recorded: the submission, with its public score", body = Object),
        (status = 202, description = "A code submission, stored and queued: the submission, with its `position` in the run queue", body = Object),
        (status = 422, description = "The file is refused: `reason`, `message`, `problems`, `more`, and the recorded `submission` (none for a notebook)", body = Object),
        (status = 503, description = "The file could not be scored, at no cost: `reason`, `message` and the recorded `submission`", body = Object)
    )
)]
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
            .map(|predictions| competition::score(&rules.metric, &solution, predictions));
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
                    CapError::Total { made, cap } => {
                        body["made"] = json!(made);
                        body["cap"] = json!(cap);
                    }
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
