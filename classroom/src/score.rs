//! Points from an executed notebook, cell by cell, as nbgrader's
//! `utils.determine_grade` gives them.
//!
//! nbgrader's rules, for a grade cell worth `max` points:
//! - grade *and* solution (a manually graded answer): 0 if its checksum
//!   still equals the released one (the engineer left the stub: "No
//!   response."), else no score until a person grades it. We compare the
//!   text with the released text; see [`crate::checksum`] for why that is
//!   the same test.
//! - grade, code (autograder tests): the outputs are read in order, and
//!   the first that decides wins:
//!   1. an `error` output, or a `stream` output named `stderr`: 0. Any
//!      write to stderr counts, warnings included, so kernels must not
//!      print compiler warnings or deprecation notices to stderr in test
//!      cells;
//!   2. an `execute_result`: partial credit from its `text/plain`
//!      (`get_partial_grade`): if Python's `float()` parses it, that many
//!      points; otherwise full points;
//!   3. no deciding output: full points.
//! - a task cell, or any other grade cell: no score until graded by hand.
//!
//! Where we differ, because nbgrader's result is wrong or a crash:
//! - a partial grade above `max` makes nbgrader raise `ValueError` (the
//!   whole notebook fails to grade); we cap it at `max`. Below 0 nbgrader
//!   gives *full* points, and NaN too (`nan >= 0` is false, so it falls
//!   into the "strange value: full credit" branch); we give 0. So the
//!   result is always in `[0, max]`;
//! - an `execute_result` without `text/plain` makes nbgrader raise
//!   `KeyError`; we treat it as "not a number": full points;
//! - a test cell the grader never ran (no outputs *and* no execution
//!   count; a cell cut off by the notebook's total timeout or a dead
//!   kernel) would get full points under rule 3; it gets 0. nbgrader never
//!   meets this case: a dead kernel fails the whole notebook there;
//! - a graded cell missing from the executed notebook gets 0 (it can't be
//!   missing from a notebook [`Source::rebuild`] made).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metadata;
use crate::nbjson::multiline;
use crate::notebook::{Notebook, source_of};
use crate::source::{GradedKind, Source};

/// One graded cell's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellScore {
    pub grade_id: String,
    pub kind: GradedKind,
    pub max_points: f64,
    /// `None`: waits for a person to grade it.
    pub points: Option<f64>,
    /// The cell has hidden tests.
    pub hidden: bool,
}

/// Scores every graded cell of `source` from `executed` (the rebuilt
/// notebook with the grader's outputs), matching cells by grade_id.
pub fn score(source: &Source, executed: &Notebook) -> Vec<CellScore> {
    source
        .graded_cells()
        .iter()
        .map(|graded| {
            let cell = executed
                .cells()
                .iter()
                .find(|c| metadata::grade_id(c) == Some(graded.grade_id.as_str()));
            let max = graded.max_points;
            let points = match (graded.kind, cell) {
                (GradedKind::Task, _) => None,
                (_, None) => Some(0.0),
                (GradedKind::Tests, Some(cell)) => Some(tests_points(cell, max)),
                (GradedKind::Manual, Some(cell)) => {
                    let released = source.released_text(&graded.grade_id);
                    (released == Some(source_of(cell))).then_some(0.0)
                }
            };
            CellScore {
                grade_id: graded.grade_id.clone(),
                kind: graded.kind,
                max_points: max,
                points,
                hidden: graded.hidden,
            }
        })
        .collect()
}

/// Points so far, the maximum, and whether every cell has its points.
pub fn total(scores: &[CellScore]) -> (f64, f64, bool) {
    let points = scores.iter().filter_map(|s| s.points).sum();
    let max = scores.iter().map(|s| s.max_points).sum();
    (points, max, scores.iter().all(|s| s.points.is_some()))
}

/// nbgrader's rules for an autograded code cell (module docs).
pub(crate) fn tests_points(cell: &Value, max: f64) -> f64 {
    let empty = Vec::new();
    let outputs = cell["outputs"].as_array().unwrap_or(&empty);
    if outputs.is_empty() && cell["execution_count"].is_null() {
        return 0.0;
    }
    for output in outputs {
        match output["output_type"].as_str() {
            Some("error") => return 0.0,
            Some("stream") if output["name"] == "stderr" => return 0.0,
            Some("execute_result") => return partial_points(output, max),
            _ => {}
        }
    }
    max
}

fn partial_points(output: &Value, max: f64) -> f64 {
    let Some(text) = multiline(&output["data"]["text/plain"]) else {
        return max;
    };
    match python_float(&text) {
        None => max,
        Some(p) if p.is_nan() => 0.0,
        Some(p) => p.clamp(0.0, max),
    }
}

/// Python's `float(str)`: surrounding whitespace ignored, `_` allowed
/// between digits, `inf`/`infinity`/`nan` in any case with an optional
/// sign, otherwise a decimal literal.
pub(crate) fn python_float(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    if trimmed.contains('_') {
        let bytes = trimmed.as_bytes();
        let ok = bytes.iter().enumerate().all(|(i, &b)| {
            b != b'_'
                || (i > 0
                    && bytes[i - 1].is_ascii_digit()
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        });
        if !ok {
            return None;
        }
        return trimmed.replace('_', "").parse().ok();
    }
    trimmed.parse().ok()
}

#[cfg(test)]
#[path = "score_tests.rs"]
mod tests;
