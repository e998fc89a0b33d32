//! The notebook the grader runs for a submission: the source, with only
//! the engineer's answers taken from what they sent.
//!
//! What nbgrader 0.9's autograde does instead (its sanitize pass:
//! `ClearOutput`, `DeduplicateIds`, `OverwriteKernelspec`,
//! `OverwriteCells`, `CheckCellMetadata`) is start from the *submission*
//! and patch it: duplicate grade ids lose their nbgrader metadata except
//! the last copy; every cell whose grade_id the database knows gets its
//! cell type, `locked` flag, `points` and checksum reset, and a locked
//! cell whose checksum changed gets its source text back (hidden tests
//! included); a cell with an unknown grade_id loses the id;
//! `add_missing_cells` (off by default) re-inserts deleted grade and task
//! cells. Everything else the engineer sent, added cells included, is run
//! in the engineer's order. That leaves holes (listed in the crate's
//! report): the `grade`/`solution`/`task` flags are never reset, so
//! flipping `solution` off on a manually graded code answer turns it into
//! an autograded cell that scores full marks if it runs; added cells run
//! between answers and tests; a deleted test cell is not run at all.
//!
//! Here the rule is the other way round. The result is the source in the
//! source's order and metadata, with hidden tests in and solutions out
//! ([`Source`]'s template), outputs cleared, and for each solution cell
//! the text of the submitted cell that has the same grade_id *and* the
//! solution flag (the last such cell, as `DeduplicateIds` keeps the last;
//! markdown attachments come along). The source's cell type is kept. An
//! answer the submission lacks stays the stub, which scores like an
//! unanswered cell. Nothing else from the submission is used; what was
//! changed is reported in [`Rebuilt::notes`], in neutral words that quote
//! only grade ids from the release and never any cell text.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::metadata;
use crate::notebook::{Notebook, cell_type_of, source_of};
use crate::source::{CellInfo, Role, Source};

/// The notebook to execute, and what was ignored or restored on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebuilt {
    pub notebook: Notebook,
    /// For the engineer: one sentence per change the grader undid.
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Seen<'a> {
    count: usize,
    answer: Option<&'a Value>,
    answers: usize,
    unflagged: bool,
    metadata_changed: bool,
    edited: bool,
    retyped: bool,
}

impl Source {
    /// The notebook the grader runs for `submission` (this module's rules).
    pub fn rebuild(&self, submission: &Notebook) -> Rebuilt {
        rebuild(self, submission)
    }
}

fn rebuild(source: &Source, submission: &Notebook) -> Rebuilt {
    let infos = source.cell_info();
    let by_id: HashMap<&str, usize> = infos
        .iter()
        .enumerate()
        .filter(|(_, c)| c.role != Role::Plain)
        .map(|(i, c)| (c.grade_id.as_str(), i))
        .collect();
    let plain_texts: HashSet<&str> = infos
        .iter()
        .filter(|c| c.role == Role::Plain)
        .map(|c| c.released_text.as_str())
        .collect();
    let source_cells = source.notebook().cells();
    let mut seen: HashMap<usize, Seen> = HashMap::new();
    let mut order = Vec::new();
    let (mut unknown, mut extra) = (0usize, 0usize);

    for cell in submission.cells() {
        let id = metadata::grade_id(cell);
        let Some(&i) = id.and_then(|id| by_id.get(id)) else {
            let flagged = metadata::is_grade(cell)
                || metadata::is_solution(cell)
                || metadata::is_locked(cell)
                || metadata::is_task(cell);
            let text = source_of(cell);
            if flagged {
                unknown += 1;
            } else if !text.trim().is_empty() && !plain_texts.contains(text) {
                extra += 1;
            }
            continue;
        };
        let info = &infos[i];
        let entry = seen.entry(i).or_default();
        if entry.count == 0 {
            order.push(i);
        }
        entry.count += 1;
        let retyped = cell_type_of(cell) != cell_type_of(&source_cells[i]);
        if info.role == Role::Answer {
            if metadata::is_solution(cell) {
                entry.answer = Some(cell);
                entry.answers += 1;
                entry.retyped = retyped;
                entry.metadata_changed |= !same_flags(cell, info);
            } else {
                entry.unflagged = true;
            }
        } else if !same_flags(cell, info) {
            entry.metadata_changed = true;
        } else if retyped || source_of(cell) != info.released_text {
            entry.edited = true;
        }
    }

    let mut notebook = source.template().clone();
    let mut notes = Vec::new();
    for (i, (info, cell)) in infos
        .iter()
        .zip(notebook.cells_mut().iter_mut())
        .enumerate()
    {
        if info.role == Role::Plain {
            continue;
        }
        let id = &info.grade_id;
        let state = seen.remove(&i).unwrap_or_default();
        if info.role == Role::Answer {
            answer_notes(id, cell_type_of(cell), &state, &mut notes);
            if let Some(answer) = state.answer {
                cell["source"] = Value::String(source_of(answer).to_owned());
                if cell["cell_type"] == "markdown"
                    && let Some(attachments) = answer.get("attachments").filter(|a| a.is_object())
                {
                    cell["attachments"] = attachments.clone();
                }
            }
            continue;
        }
        if state.count == 0 {
            notes.push(format!(
                "Cell '{id}' is missing from your notebook; the grader used the original."
            ));
        } else if state.metadata_changed {
            notes.push(format!(
                "Cell '{id}' had its grading metadata changed; the grader used the original."
            ));
        } else if state.edited {
            notes.push(format!(
                "Cell '{id}' was edited; the grader ran the original."
            ));
        }
        if state.count > 1 {
            notes.push(format!(
                "Cell '{id}' appears {} times in your notebook; the grader used the original once.",
                state.count
            ));
        }
    }
    if source.language() == crate::Language::Rust {
        // Answers run before tests in one crate: a test's checks are
        // called by path, so no answer's `macro_rules!` can replace them.
        for (info, cell) in infos.iter().zip(notebook.cells_mut().iter_mut()) {
            if info.role != Role::Answer && cell["cell_type"] == "code" {
                let text = crate::qualify::qualify_std_macros(source_of(cell));
                cell["source"] = Value::String(text);
            }
        }
    }
    if order.windows(2).any(|w| w[0] > w[1]) {
        notes.push("Cells were moved; the grader used the assignment's order.".to_owned());
    }
    if unknown > 0 {
        notes.push(format!(
            "{unknown} cell(s) with grading metadata the assignment doesn't have were ignored."
        ));
    }
    if extra > 0 {
        notes.push(format!(
            "{extra} cell(s) outside the answer cells were added or edited; the grader runs only your answer cells, with the rest of the notebook as released."
        ));
    }
    Rebuilt { notebook, notes }
}

fn answer_notes(id: &str, cell_type: &str, state: &Seen, notes: &mut Vec<String>) {
    if state.answer.is_none() {
        let why = if state.unflagged {
            "is no longer marked as an answer in your notebook"
        } else {
            "is missing from your notebook"
        };
        notes.push(format!(
            "Answer cell '{id}' {why}; it was graded as unanswered."
        ));
        return;
    }
    if state.answers > 1 {
        notes.push(format!(
            "Answer cell '{id}' appears {} times in your notebook; the last one was graded.",
            state.answers
        ));
    }
    if state.retyped {
        notes.push(format!(
            "Answer cell '{id}' had its cell type changed; it was graded as {cell_type}."
        ));
    }
    if state.metadata_changed {
        notes.push(format!(
            "Answer cell '{id}' had its grading metadata changed; the original metadata was used."
        ));
    }
}

/// Whether a submitted cell's nbgrader flags and points are the source's.
fn same_flags(cell: &Value, info: &CellInfo) -> bool {
    let Some(flags) = &info.flags else {
        return false;
    };
    let locked = cell["metadata"]["nbgrader"]["locked"] == Value::Bool(true);
    metadata::is_grade(cell) == flags.grade
        && metadata::is_solution(cell) == flags.solution
        && metadata::is_task(cell) == flags.task
        && locked == flags.locked
        && metadata::points(cell) == flags.points
}

#[cfg(test)]
#[path = "rebuild_tests.rs"]
mod tests;
