//! Rows and the `classroom` crate's results as JSON (and the gradebook as
//! CSV), with what each caller may see: an engineer gets hidden-test
//! results only when the assignment's policy says so, and never hidden
//! test source or solution text (the feedback is built from the source by
//! `classroom::feedback`, which leaves them out, and engineers get no output
//! of a cell that ran after hidden tests: see `withhold_outputs_after_hidden`).

use chrono::{DateTime, Utc};
use classroom::{CellScore, Notebook, Policy, Source};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::store::{AssignmentRow, GradingRow, GradingState, SubmissionRow, User};

pub(crate) fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An assignment; `source` adds its graded cells (never their text).
pub fn assignment(
    row: &AssignmentRow,
    policy: &Policy,
    source: Option<&Source>,
    staff: bool,
) -> Value {
    let mut v = json!({
        "course": row.course,
        "name": row.name,
        "max_score": row.max_score,
        "policy": policy,
        "released": row.released,
        "published": row.published,
        "staff": staff,
        "path": super::engineer::copy_path(&row.course, &row.name),
    });
    if let Some(source) = source {
        v["language"] = json!(source.language());
        v["cells"] = source
            .graded_cells()
            .iter()
            .map(|c| {
                json!({
                    "grade_id": c.grade_id,
                    "kind": c.kind,
                    "points": c.max_points,
                    "hidden": c.hidden,
                })
            })
            .collect();
    }
    v
}

fn extension(
    s: &AppState,
    course: &str,
    assignment: &str,
    user: &str,
) -> Result<Option<chrono::Duration>, ApiError> {
    Ok(s.store
        .extension(course, assignment, user)?
        .map(chrono::Duration::seconds))
}

/// The caller's own state on an assignment: the window, their latest
/// submission and its state.
pub fn my_state(
    s: &AppState,
    user: &User,
    row: &AssignmentRow,
    policy: &Policy,
) -> Result<Value, ApiError> {
    let ext = extension(s, &row.course, &row.name, &user.name)?;
    let window = classroom::window(&policy.dates, ext, Utc::now());
    let subs = s
        .store
        .submissions(&row.course, &row.name, Some(&user.name))?;
    let latest = match subs.last() {
        Some(sub) => submission(s, sub, false)?,
        None => Value::Null,
    };
    Ok(json!({
        "window": window,
        "extension_s": ext.map(|d| d.num_seconds()),
        "submissions": subs.len(),
        "latest": latest,
    }))
}

/// The grading a submission is judged by: its latest graded one, and the
/// latest of any state (a regrade may be queued behind a grade).
fn gradings(s: &AppState, id: &str) -> Result<(Option<GradingRow>, Option<GradingRow>), ApiError> {
    let all = s.store.gradings(id)?;
    let graded = all
        .iter()
        .rev()
        .find(|g| g.state == GradingState::Graded)
        .cloned();
    Ok((graded, all.last().cloned()))
}

/// A grading's scores with the trainers' manual grades put in.
fn scores_of(
    s: &AppState,
    sub: &SubmissionRow,
    graded: &GradingRow,
) -> Result<Vec<CellScore>, ApiError> {
    let mut scores: Vec<CellScore> = graded
        .scores
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| ApiError::Internal(format!("grading {}'s scores: {e}", graded.id)))?
        .unwrap_or_default();
    for manual in s.store.manual_grades(&sub.id)? {
        if let Some(c) = scores.iter_mut().find(|c| c.grade_id == manual.grade_id) {
            c.points = Some(manual.points);
        }
    }
    Ok(scores)
}

/// Points taken off for lateness (0 when on time or without a due date).
fn penalty(
    policy: &Policy,
    due: Option<DateTime<Utc>>,
    submitted: Option<DateTime<Utc>>,
    score: f64,
    max: f64,
) -> f64 {
    match (due, submitted) {
        (Some(due), Some(at)) if at > due => policy.late.deduction(score, max, due, at),
        _ => 0.0,
    }
}

/// A submission, its grading state (with its place in the queue) and, once
/// graded, its feedback as the caller may see it.
pub fn submission(s: &AppState, sub: &SubmissionRow, staff: bool) -> Result<Value, ApiError> {
    let row = s
        .store
        .assignment(&sub.course, &sub.assignment)?
        .ok_or_else(|| super::not_found(&sub.course, Some(&sub.assignment)))?;
    let policy = super::policy(&row)?;
    let (graded, latest) = gradings(s, &sub.id)?;
    let mut v = json!({
        "id": sub.id,
        "course": sub.course,
        "assignment": sub.assignment,
        "user": sub.user_name,
        "submitted": sub.submitted,
        "state": latest.as_ref().map(|g| g.state),
        "reason": latest.as_ref().and_then(|g| g.reason.clone()),
    });
    let ext = extension(s, &sub.course, &sub.assignment, &sub.user_name)?;
    let due = policy.dates.due.map(|d| d + ext.unwrap_or_default());
    let submitted = parse_time(&sub.submitted);
    if let (Some(due), Some(at)) = (due, submitted) {
        v["late_s"] = json!((at - due).num_seconds().max(0));
    }
    if let Some(l) = &latest
        && l.state == GradingState::Queued
    {
        v["queue"] = json!(s.grader.position(l.id));
    }
    if let Some(g) = graded {
        let source = super::source(s, &sub.course, &sub.assignment)?;
        let executed = std::fs::read(s.classroom.graded(g.id))
            .ok()
            .and_then(|b| Notebook::parse(&b).ok())
            .ok_or_else(|| ApiError::Internal(format!("grading {}'s notebook is missing", g.id)))?;
        let scores = scores_of(s, sub, &g)?;
        let (score, max, _) = classroom::total(&scores);
        let reveal =
            staff || classroom::hidden_visible(&policy, ext, Utc::now(), row.published.is_some());
        let deduction = penalty(&policy, due, submitted, score, max);
        let mut feedback = classroom::feedback(&source, &executed, &scores, deduction, reveal);
        if !staff {
            withhold_outputs_after_hidden(&source, &mut feedback);
        }
        v["feedback"] = json!(feedback);
        comment_cells(&mut v["feedback"], &s.store.manual_grades(&sub.id)?);
        if staff {
            v["answers"] = manual_answers(&source, &executed);
        }
        v["graded"] = json!(g.finished);
        let notes: Vec<String> = g
            .notes
            .as_deref()
            .and_then(|n| serde_json::from_str(n).ok())
            .unwrap_or_default();
        v["notes"] = json!(notes);
        if staff {
            v["score"] = json!(score);
            v["penalty"] = json!(deduction);
            v["max_score"] = json!(max);
        }
    }
    if staff {
        v["gradings"] = s
            .store
            .gradings(&sub.id)?
            .iter()
            .map(|g| json!({"id": g.id, "state": g.state, "score": g.score, "attempts": g.attempts, "queued": g.queued, "finished": g.finished, "reason": g.reason}))
            .collect();
        v["manual"] = s
            .store
            .manual_grades(&sub.id)?
            .iter()
            .map(|m| json!({"grade_id": m.grade_id, "points": m.points, "comment": m.comment, "grader": m.grader, "at": m.at}))
            .collect();
    }
    Ok(v)
}

/// Puts the trainers' comments on the feedback cells they graded by hand,
/// where the cell's points are shown (a comment on a cell whose result is
/// withheld waits with it).
fn comment_cells(feedback: &mut Value, manual: &[crate::store::ManualGrade]) {
    for cell in feedback["cells"].as_array_mut().into_iter().flatten() {
        let Some(m) = manual
            .iter()
            .find(|m| cell["grade_id"].as_str() == Some(m.grade_id.as_str()))
        else {
            continue;
        };
        if !m.comment.is_empty() && !cell["points"].is_null() {
            cell["comment"] = json!(m.comment);
        }
    }
}

/// For the staff: the text of each hand-graded answer as it was graded,
/// from the rebuilt notebook (the cell the rebuild took, not a look-alike
/// an engineer may have put before it in their submission).
fn manual_answers(source: &Source, executed: &Notebook) -> Value {
    let answers: serde_json::Map<String, Value> = source
        .graded_cells()
        .iter()
        .filter(|c| c.kind == classroom::GradedKind::Manual)
        .filter_map(|c| {
            let cell = executed
                .cells()
                .iter()
                .find(|x| classroom::metadata::grade_id(x) == Some(c.grade_id.as_str()))?;
            Some((
                c.grade_id.clone(),
                json!(cell["source"].as_str().unwrap_or("")),
            ))
        })
        .collect();
    Value::Object(answers)
}

/// Said instead of the output of a cell that ran after hidden tests.
const WITHHELD_OUTPUT: &str =
    "[output withheld: this cell ran after hidden tests, which your code could see]";

/// Engineers see no output of a graded cell that ran after the first cell
/// with hidden tests (its points and status stay). The answers run first,
/// in the same kernel, and their code can print what it saw of later cells
/// (an IPython `pre_run_cell` hook, a closure a test calls with hidden
/// inputs) in any encoding, so `classroom::feedback`'s scrubbing of the
/// hidden lines as written cannot catch it.
fn withhold_outputs_after_hidden(source: &Source, feedback: &mut classroom::Feedback) {
    let cells = source.graded_cells();
    let Some(first) = cells.iter().filter(|c| c.hidden).map(|c| c.index).min() else {
        return;
    };
    let after: std::collections::HashSet<&str> = cells
        .iter()
        .filter(|c| c.index > first)
        .map(|c| c.grade_id.as_str())
        .collect();
    for cell in &mut feedback.cells {
        if after.contains(cell.grade_id.as_str()) && !cell.output.is_empty() {
            cell.output = WITHHELD_OUTPUT.to_owned();
        }
    }
}

/// The gradebook: one row per engineer who submitted, from the submission
/// that counts by the assignment's rule.
pub fn gradebook(
    s: &AppState,
    row: &AssignmentRow,
    policy: &Policy,
    source: &Source,
) -> Result<Value, ApiError> {
    let subs = s.store.submissions(&row.course, &row.name, None)?;
    let mut users: Vec<&str> = subs.iter().map(|r| r.user_name.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let mut rows = Vec::new();
    // Every submission's latest grading, for the progress line.
    let mut progress = std::collections::BTreeMap::from(
        ["queued", "grading", "graded", "failed"].map(|k| (k, 0_usize)),
    );
    for user in users {
        let mine: Vec<&SubmissionRow> = subs.iter().filter(|r| r.user_name == user).collect();
        let ext = extension(s, &row.course, &row.name, user)?;
        let due = policy.dates.due.map(|d| d + ext.unwrap_or_default());
        let mut judged = Vec::new();
        for sub in &mine {
            let (graded, latest) = gradings(s, &sub.id)?;
            if let Some(l) = &latest {
                *progress.entry(l.state.as_str()).or_default() += 1;
            }
            let (cells, score, max) = match &graded {
                Some(g) => {
                    let scores = scores_of(s, sub, g)?;
                    let (score, max, _) = classroom::total(&scores);
                    (scores, Some(score), max)
                }
                None => (Vec::new(), None, row.max_score),
            };
            let deduction = score.map_or(0.0, |sc| {
                penalty(policy, due, parse_time(&sub.submitted), sc, max)
            });
            judged.push((sub, latest, cells, score, deduction));
        }
        let counted = match policy.counts {
            classroom::Counts::Latest => judged.last(),
            classroom::Counts::First => judged.first(),
            classroom::Counts::Best => judged
                .iter()
                .filter(|j| j.3.is_some())
                .max_by(|a, b| {
                    let fa = a.3.unwrap_or(0.0) - a.4;
                    let fb = b.3.unwrap_or(0.0) - b.4;
                    fa.total_cmp(&fb)
                })
                .or(judged.last()),
        };
        let Some((sub, latest, cells, score, deduction)) = counted else {
            continue;
        };
        let per_cell: serde_json::Map<String, Value> = cells
            .iter()
            .map(|c| (c.grade_id.clone(), json!(c.points)))
            .collect();
        rows.push(json!({
            "user": user,
            "submission": sub.id,
            "submitted": sub.submitted,
            "submissions": mine.len(),
            "state": latest.as_ref().map(|g| g.state),
            "late": due.zip(parse_time(&sub.submitted)).is_some_and(|(d, a)| a > d),
            "cells": per_cell,
            "score": score,
            "penalty": deduction,
            "total": score.map(|sc| (sc - deduction).max(0.0)),
        }));
    }
    Ok(json!({
        "course": row.course,
        "assignment": row.name,
        "max_score": source.max_score(),
        "cells": source.graded_cells().iter().map(|c| json!({"grade_id": c.grade_id, "points": c.max_points, "kind": c.kind})).collect::<Vec<_>>(),
        "rows": rows,
        "progress": progress,
    }))
}

/// The gradebook as CSV: user, each graded cell, score, penalty, total,
/// state, submitted.
pub fn gradebook_csv(book: &Value) -> String {
    let cells: Vec<String> = book["cells"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["grade_id"].as_str().map(str::to_owned))
        .collect();
    let mut out = String::new();
    let mut header = vec!["user".to_owned()];
    header.extend(cells.iter().cloned());
    header.extend(["score", "penalty", "total", "state", "submitted", "late"].map(str::to_owned));
    out.push_str(&csv_line(&header));
    for row in book["rows"].as_array().into_iter().flatten() {
        let num = |v: &Value| v.as_f64().map(|n| format!("{n}")).unwrap_or_default();
        let mut line = vec![row["user"].as_str().unwrap_or("").to_owned()];
        line.extend(cells.iter().map(|c| num(&row["cells"][c])));
        line.push(num(&row["score"]));
        line.push(num(&row["penalty"]));
        line.push(num(&row["total"]));
        line.push(row["state"].as_str().unwrap_or("").to_owned());
        line.push(row["submitted"].as_str().unwrap_or("").to_owned());
        line.push(row["late"].as_bool().unwrap_or(false).to_string());
        out.push_str(&csv_line(&line));
    }
    out
}

/// One CSV record (RFC 4180 quoting). A field a spreadsheet would take for
/// a formula gets a leading `'`.
fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            let f = if f.starts_with(['=', '+', '-', '@']) && f.parse::<f64>().is_err() {
                format!("'{f}")
            } else {
                f.clone()
            };
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect();
    quoted.join(",") + "\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use classroom::source::GradedKind;
    use classroom::{CellStatus, Feedback, FeedbackCell};

    fn test_cell(id: &str, text: &str) -> Value {
        json!({"cell_type": "code", "source": text, "outputs": [], "execution_count": null,
               "metadata": {"nbgrader": {"grade": true, "grade_id": id, "locked": true,
                                         "points": 1, "schema_version": 3,
                                         "solution": false, "task": false}}})
    }

    #[test]
    fn engineers_see_no_output_of_a_cell_that_ran_after_hidden_tests() {
        let nb = json!({"nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "P", "language": "python"}},
        "cells": [
            test_cell("before", "assert True"),
            test_cell("hidden", "### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS"),
            test_cell("after", "assert True"),
        ]});
        let source = Source::parse(&serde_json::to_vec(&nb).unwrap()).unwrap();
        let cell = |id: &str, output: &str| FeedbackCell {
            grade_id: id.into(),
            kind: GradedKind::Tests,
            max_points: 1.0,
            points: Some(1.0),
            status: CellStatus::Passed,
            output: output.into(),
        };
        let mut feedback = Feedback {
            cells: vec![
                cell("before", "printed"),
                cell("hidden", ""),
                cell("after", "B64:c2VjcmV0"),
            ],
            score: Some(3.0),
            max_score: 3.0,
            penalty: 0.0,
            hidden_withheld: false,
        };
        withhold_outputs_after_hidden(&source, &mut feedback);
        let outputs: Vec<&str> = feedback.cells.iter().map(|c| c.output.as_str()).collect();
        assert_eq!(outputs, ["printed", "", WITHHELD_OUTPUT]);
        assert_eq!(feedback.cells[2].points, Some(1.0));
    }
}
