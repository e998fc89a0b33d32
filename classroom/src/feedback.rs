//! What an engineer sees of a graded submission: per cell, points, a
//! status and the text the cell printed; never hidden-test source or
//! solution text.
//!
//! nbgrader's `generate_feedback` renders the whole autograded notebook as
//! HTML, hidden tests (restored from the source) included, once the
//! instructor releases feedback. Here feedback is data, and:
//! - a cell with hidden tests shows no output, ever: a failing assert's
//!   traceback quotes the hidden line. Its points and status are withheld
//!   too until `reveal_hidden` (see [`crate::policy::hidden_visible`]);
//! - other cells show their outputs' text: streams, `ename: evalue` and the
//!   traceback of errors (ANSI colours removed), `text/plain` of results
//!   and displays. Any line containing one of [`Source::secret_lines`] is
//!   replaced by `[hidden]` (the engineer's code could print a later
//!   cell's source), then the text is capped at [`OUTPUT_CAP`] bytes;
//! - the total (`score`, after the penalty) is shown only when every cell
//!   is scored and visible; while hidden results are withheld the penalty
//!   reads 0, since nbgrader's `zero` penalty equals the score and would
//!   give the hidden results away.

use serde::Serialize;
use serde_json::Value;

use crate::metadata;
use crate::nbjson::multiline;
use crate::notebook::Notebook;
use crate::score::CellScore;
use crate::source::{GradedKind, Source};

/// Bytes of output text shown per cell.
pub const OUTPUT_CAP: usize = 20 * 1024;
const HIDDEN_LINE: &str = "[hidden]";
const TRUNCATED: &str = "... [output truncated]";

/// How a cell did, as the engineer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Passed,
    Failed,
    Partial,
    /// Waits for a person to grade it.
    Pending,
    /// Has hidden tests whose result is not shown yet.
    Withheld,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackCell {
    pub grade_id: String,
    pub kind: GradedKind,
    pub max_points: f64,
    /// `None` when withheld or waiting for manual grading.
    pub points: Option<f64>,
    pub status: CellStatus,
    /// The cell's output text; always empty for cells with hidden tests.
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub cells: Vec<FeedbackCell>,
    /// Points after the penalty, once every cell is scored and visible.
    pub score: Option<f64>,
    pub max_score: f64,
    /// Points taken off for lateness (0 while hidden results are withheld).
    pub penalty: f64,
    pub hidden_withheld: bool,
}

/// Builds the engineer's feedback (module docs).
pub fn feedback(
    source: &Source,
    executed: &Notebook,
    scores: &[CellScore],
    penalty: f64,
    reveal_hidden: bool,
) -> Feedback {
    let secrets = source.secret_lines();
    let mut withheld = false;
    let cells: Vec<FeedbackCell> = scores
        .iter()
        .map(|s| {
            let hide = s.hidden && !reveal_hidden;
            withheld |= hide;
            let points = if hide { None } else { s.points };
            let status = match points {
                _ if hide => CellStatus::Withheld,
                None => CellStatus::Pending,
                Some(p) if p >= s.max_points => CellStatus::Passed,
                Some(p) if p <= 0.0 => CellStatus::Failed,
                Some(_) => CellStatus::Partial,
            };
            let output = if s.hidden {
                String::new()
            } else {
                executed
                    .cells()
                    .iter()
                    .find(|c| metadata::grade_id(c) == Some(s.grade_id.as_str()))
                    .map(|c| cap(&scrub(&output_text(c), &secrets)))
                    .unwrap_or_default()
            };
            FeedbackCell {
                grade_id: s.grade_id.clone(),
                kind: s.kind,
                max_points: s.max_points,
                points,
                status,
                output,
            }
        })
        .collect();
    let max_score = scores.iter().map(|s| s.max_points).sum();
    let penalty = if withheld || !penalty.is_finite() {
        0.0
    } else {
        penalty.max(0.0)
    };
    let score = cells
        .iter()
        .map(|c| c.points)
        .sum::<Option<f64>>()
        .map(|total| (total - penalty).max(0.0));
    Feedback {
        cells,
        score,
        max_score,
        penalty,
        hidden_withheld: withheld,
    }
}

/// The text a cell printed, outputs in order (first 4 × [`OUTPUT_CAP`]
/// bytes, cut at a line end so no partial line escapes scrubbing).
fn output_text(cell: &Value) -> String {
    let mut text = String::new();
    for output in cell["outputs"].as_array().into_iter().flatten() {
        let part = match output["output_type"].as_str() {
            Some("stream") => multiline(&output["text"]).unwrap_or_default(),
            Some("error") => {
                let mut s = format!(
                    "{}: {}\n",
                    output["ename"].as_str().unwrap_or("Error"),
                    output["evalue"].as_str().unwrap_or("")
                );
                for line in output["traceback"].as_array().into_iter().flatten() {
                    s.push_str(&strip_ansi(line.as_str().unwrap_or("")));
                    s.push('\n');
                }
                s
            }
            Some("execute_result" | "display_data") => {
                let mut s = multiline(&output["data"]["text/plain"]).unwrap_or_default();
                s.push('\n');
                s
            }
            _ => String::new(),
        };
        text.push_str(&strip_ansi(&part));
        if text.len() > 4 * OUTPUT_CAP {
            let mut end = 4 * OUTPUT_CAP;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let end = text[..end].rfind('\n').unwrap_or(0);
            text.truncate(end);
            text.push('\n');
            text.push_str(TRUNCATED);
            break;
        }
    }
    text
}

/// Replaces every line that contains a secret line with `[hidden]`.
fn scrub(text: &str, secrets: &[String]) -> String {
    text.split('\n')
        .map(|line| {
            if secrets.iter().any(|s| line.contains(s.as_str())) {
                HIDDEN_LINE
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn cap(text: &str) -> String {
    if text.len() <= OUTPUT_CAP {
        return text.to_owned();
    }
    let mut end = OUTPUT_CAP - TRUNCATED.len() - 1;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n{TRUNCATED}", &text[..end])
}

/// Removes terminal escape sequences: CSI (`ESC [ … final`), OSC
/// (`ESC ] … BEL` or `ESC \`), and two-character escapes.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
#[path = "feedback_tests.rs"]
mod tests;
