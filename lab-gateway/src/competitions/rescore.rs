//! Rescoring: when staff replace the solution (a wrong label found late,
//! as happens on Kaggle), every scored submission is checked and scored
//! again against it from its stored file (a CSV as received, a code run's
//! `submission.csv` as it wrote it). A file the new solution refuses is
//! rejected (a CSV, which then costs nothing) or failed as a format error
//! (a notebook's output, its own fault). The boards follow at once.
//!
//! It runs under the competition write lock (`Competitions::changing`),
//! so no submission is scored against one solution and recorded after the
//! other.

use axum::Json;
use axum::extract::{Path, State};
use classroom::competition::{self, Rules, Solution, code::Failure, hidden};
use serde_json::{Value, json};

use super::{Competitions, offload, rules, staff_only};
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{EntryKind, EntryRow, Rescored, Store};

/// How many submissions a rescore changed, by what they became.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Counts {
    pub rescored: u32,
    pub refused: u32,
    /// Scored rows whose file is gone (reported, left as they were).
    pub missing: u32,
    /// Scored rows the metric could not score again (the platform's; left
    /// as they were, and logged).
    pub failed: u32,
}

/// Rescores every scored submission of `row`'s competition; the caller
/// holds `Competitions::changing`.
pub(crate) fn rescore_all(
    store: &Store,
    competitions: &Competitions,
    row: &crate::store::CompetitionRow,
    rules: &Rules,
) -> Result<Counts, ApiError> {
    let solution = competitions.solution(row, rules)?;
    let mut counts = Counts::default();
    for entry in store.scored_entries(&row.slug)? {
        let Some(bytes) = stored_file(competitions, &entry) else {
            tracing::warn!(competition = %row.slug, submission = entry.id, "a scored submission's file is gone; not rescored");
            counts.missing += 1;
            continue;
        };
        let result = match judge(&entry, &bytes, rules, &solution) {
            Ok(result) => result,
            Err(e) => {
                // Left as it was; the others are still rescored.
                tracing::error!(competition = %row.slug, submission = entry.id, error = %e, "a submission could not be rescored");
                counts.failed += 1;
                continue;
            }
        };
        if !matches!(result, Rescored::Scored { .. }) {
            counts.refused += 1;
        }
        if store.rescore_entry(entry.id, &result)? {
            counts.rescored += 1;
        }
    }
    tracing::info!(competition = %row.slug, rescored = counts.rescored, refused = counts.refused, missing = counts.missing, "rescored");
    Ok(counts)
}

/// The file a submission is scored from.
fn stored_file(competitions: &Competitions, entry: &EntryRow) -> Option<Vec<u8>> {
    let name = match entry.kind {
        EntryKind::Csv => entry.file.clone(),
        EntryKind::Code => super::files::Files::output_of(&entry.file, entry.attempts),
    };
    std::fs::read(competitions.files.submission(&entry.competition, &name)).ok()
}

fn judge(
    entry: &EntryRow,
    bytes: &[u8],
    rules: &Rules,
    solution: &Solution,
) -> Result<Rescored, ApiError> {
    match competition::submission::read(bytes, rules.max_bytes, &rules.columns, &rules.metric, solution) {
        Ok(predictions) => {
            let scores = competition::score(&rules.metric, solution, predictions)
                .map_err(|e| ApiError::Internal(format!("rescoring submission {}: {e}", entry.id)))?;
            Ok(Rescored::Scored {
                public: scores.public,
                private: scores.private,
            })
        }
        Err(rejected) => Ok(match entry.kind {
            EntryKind::Csv => Rescored::Rejected {
                error: json!({"message": rejected.to_string(), "problems": rejected.problems, "more": rejected.more})
                    .to_string(),
            },
            // What a run wrote on hidden data is told by kind only.
            EntryKind::Code => Rescored::Failed {
                error: Failure::Format(hidden::withhold_problems(
                    rejected,
                    &[rules.columns.id.as_str(), rules.columns.target.as_str()],
                ))
                .to_json()
                .to_string(),
            },
        }),
    }
}

/// Rescore every scored submission against the current solution.
///
/// Staff only, until the private board is visible (409 after). A file the
/// solution now refuses is rejected (a CSV, which then costs nothing) or
/// failed as a format error (a code run's output).
#[utoipa::path(
    post,
    path = "/api/competitions/{slug}/rescore",
    tag = "competitions",
    params(
        ("slug" = String, Path, description = "The competition's short name"),
    ),
    responses(
        (status = 200, description = "What changed: `rescored`, `refused`, `missing` (file gone, left as it was) and `failed` (could not be scored again, left as it was)", body = Object)
    )
)]
pub async fn rescore(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    offload(&s, &user, move |s, user| {
        let _changing = s.competitions.changing();
        let row = staff_only(s, user, &slug)?;
        let rules = rules(&row)?;
        if rules.private_visible(chrono::Utc::now(), row.revealed.is_some()) {
            return Err(ApiError::Conflict(
                "the private board is public; its scores are final".into(),
            ));
        }
        let counts = rescore_all(&s.store, &s.competitions, &row, &rules)?;
        tracing::info!(competition = %slug, by = %user.name, "rescore asked");
        Ok(Json(json!(counts)))
    })
    .await
}
