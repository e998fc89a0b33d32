//! Competitions as JSON and CSV, for whoever asks: a private score appears
//! only where the caller may see it (`show_private`), so no route can leak
//! one by forgetting to remove it.

use classroom::competition::{Move, Rules, Standing, board};
use serde_json::{Value, json};

use crate::store::{CompetitionRow, EntryRow, TeamRow};

/// A competition: what everyone who may see it sees, and for staff whether
/// it has a solution and is published.
pub fn competition(
    row: &CompetitionRow,
    rules: &Rules,
    staff: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let mut v = json!({
        "slug": row.slug,
        "title": row.title,
        "overview": row.overview,
        "rules_text": row.rules_text,
        "rules": rules,
        "phase": rules.phase(now),
        "higher_is_better": rules.metric.higher_is_better(),
        "prediction_columns": rules.metric.prediction_columns(&rules.columns.target).iter().map(|(name, kind)| json!({"name": name, "kind": kind.to_string()})).collect::<Vec<_>>(),
        "private_visible": rules.private_visible(now, row.revealed.is_some()),
        "staff": staff,
    });
    if staff {
        v["has_solution"] = json!(row.solution.is_some());
        v["published"] = json!(row.published);
        v["revealed"] = json!(row.revealed);
        v["created_by"] = json!(row.created_by);
    }
    v
}

pub fn team(team: &TeamRow) -> Value {
    json!({"id": team.id, "name": team.name, "members": team.members})
}

/// A score as a participant gets it: rounded to the shown decimals (full
/// precision would let a participant read counts off a score), or whole for
/// staff.
fn score(score: Option<f64>, decimals: u32, staff: bool) -> Value {
    match score {
        Some(s) if staff => json!(s),
        Some(s) => json!(board::shown(s, decimals).parse::<f64>().unwrap_or(s)),
        None => Value::Null,
    }
}

/// A submission; its private score only with `show_private`.
pub fn entry(e: &EntryRow, show_private: bool, decimals: u32, staff: bool) -> Value {
    let mut v = json!({
        "id": e.id,
        "team": e.team,
        "user": e.user_name,
        "description": e.description,
        "submitted": e.submitted,
        "kind": e.kind,
        "state": e.state,
        "counted": e.counted,
        "public_score": score(e.public_score, decimals, staff),
        "public_shown": e.public_score.map(|s| board::shown(s, decimals)),
        "selected": e.selected,
    });
    if show_private {
        v["private_score"] = score(e.private_score, decimals, staff);
        v["private_shown"] = json!(e.private_score.map(|s| board::shown(s, decimals)));
    }
    if let Some(minutes) = e.runtime_min {
        v["runtime_minutes"] = json!(minutes);
    }
    if let Some(error) = &e.error {
        v["error"] = serde_json::from_str(error).unwrap_or_else(|_| json!({"message": error}));
    }
    v
}

/// A board's rows with team names; scores rounded to the shown decimals.
pub fn standings(
    rows: &[Standing],
    names: &std::collections::HashMap<i64, String>,
    decimals: u32,
) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "rank": r.rank,
                "team": names.get(&r.team).cloned().unwrap_or_default(),
                "team_id": r.team,
                "score": board::shown(r.score, decimals),
                "entries": r.entries,
                "submitted": crate::timefmt::iso(r.at),
            })
        })
        .collect()
}

pub fn moves(moves: &[Move], names: &std::collections::HashMap<i64, String>) -> Vec<Value> {
    moves
        .iter()
        .map(|m| {
            json!({
                "team": names.get(&m.team).cloned().unwrap_or_default(),
                "team_id": m.team,
                "public_rank": m.public_rank,
                "private_rank": m.private_rank,
                "change": m.change,
            })
        })
        .collect()
}

/// A board as CSV: rank, team, score, entries, when the ranked submission came.
pub fn standings_csv(rows: &[Value]) -> String {
    let mut out = String::from("rank,team,score,entries,submitted\n");
    for r in rows {
        let field = |k: &str| match &r[k] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut team = field("team");
        // A name a spreadsheet would run as a formula is shown as text.
        if team.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            team.insert(0, '\'');
        }
        let team = if team.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", team.replace('"', "\"\""))
        } else {
            team
        };
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            field("rank"),
            team,
            field("score"),
            field("entries"),
            field("submitted")
        ));
    }
    out
}
