//! A trainer's source notebook, checked once, and the two notebooks made
//! from it: the release engineers get and the template the grader runs.
//!
//! [`Source::release`] is `nbgrader generate_assignment`'s pipeline (minus
//! the header/footer and AUTOTEST steps):
//! 1. `LockCells`: grade+solution and solution cells get
//!    `metadata.deletable = false`; grade cells and locked cells also get
//!    `editable = false`;
//! 2. `ClearSolutions`: in a solution cell, each solution region becomes
//!    the stub (see [`crate::markers`]); a solution cell without markers is
//!    replaced wholly by the code stub ([`Language::code_stub`]) or, in
//!    markdown, by [`TEXT_STUB`]. A region in any other cell is an error;
//! 3. `ClearOutput`: code cells lose outputs, execution counts and the
//!    `collapsed`/`scrolled` metadata;
//! 4. `ClearHiddenTests`, then `ClearMarkScheme`: those regions are removed
//!    (hidden tests only in grade cells, mark schemes only in task cells);
//! 5. `ComputeChecksums`: grade, solution and locked cells get
//!    `nbgrader.checksum` of the released cell and `nbgrader.cell_type`;
//!    the notebook loses `metadata.celltoolbar`.
//!
//! All other metadata, nbgrader's included, is kept as it is.
//!
//! The grader's template is what nbgrader's database keeps (`SaveCells`
//! runs between `ClearSolutions` and `ClearHiddenTests`): solutions out,
//! hidden tests and mark schemes in, checksums of that text.
//!
//! Refused, where nbgrader would release or grade wrongly: hidden tests in
//! a solution cell (nbgrader releases the cell, then grades the
//! engineer's answer in its place, so they never run), and nbgrader's
//! `AUTOTEST` lines in code cells (unsupported here: left as comments
//! they would pass and award the points).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checksum::compute_checksum;
use crate::error::FormatError;
use crate::markers::{self, HIDDEN_TESTS, Kind, MARK_SCHEME, MarkerError, SOLUTION};
use crate::metadata::{self, Flags};
use crate::notebook::{Language, Notebook, TEXT_STUB, cell_type_of, source_of};

/// Shortest line [`Source::secret_lines`] reports: shorter ones (`}`,
/// `else:`, `pass`) appear in every program and would blank out feedback.
pub const MIN_SECRET_CHARS: usize = 8;

/// What a graded cell is worth and how it is graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradedKind {
    /// A grade cell that is not a solution: autograded code.
    Tests,
    /// A grade cell that is also a solution: a free answer, code or
    /// markdown, graded by hand.
    Manual,
    /// A task cell: a markdown task graded by hand.
    Task,
}

/// One cell that carries points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradedCell {
    /// Position in the source notebook, from 0.
    pub index: usize,
    pub grade_id: String,
    pub kind: GradedKind,
    pub max_points: f64,
    /// Has a hidden-tests region.
    pub hidden: bool,
}

/// The role a source cell plays when a submission is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// No nbgrader flags.
    Plain,
    /// A solution cell: its text comes from the engineer.
    Answer,
    /// Grade, locked or task: its text always comes from the source.
    Fixed,
}

#[derive(Debug, Clone)]
pub(crate) struct CellInfo {
    pub(crate) role: Role,
    pub(crate) flags: Option<Flags>,
    /// Empty for plain cells.
    pub(crate) grade_id: String,
    pub(crate) released_text: String,
}

/// A validated source notebook.
#[derive(Debug, Clone)]
pub struct Source {
    notebook: Notebook,
    language: Language,
    cells: Vec<CellInfo>,
    graded: Vec<GradedCell>,
    released: Notebook,
    template: Notebook,
    secrets: Vec<String>,
}

impl Source {
    /// Parses and checks a source notebook: nbgrader's metadata rules
    /// ([`crate::metadata`]), unique grade ids, well-formed markers. The
    /// error names the cell and what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Source, FormatError> {
        Source::from_notebook(Notebook::parse(bytes)?)
    }

    /// As [`Source::parse`], for a notebook already parsed.
    pub fn from_notebook(notebook: Notebook) -> Result<Source, FormatError> {
        let language = notebook.language()?;
        let mut cells = Vec::new();
        let mut graded = Vec::new();
        let mut secret_candidates = Vec::new();
        let mut template_texts = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, cell) in notebook.cells().iter().enumerate() {
            let flags = metadata::validate(index, cell)?;
            let id = flags
                .as_ref()
                .map(|f| f.grade_id.clone())
                .unwrap_or_default();
            if flags.as_ref().is_some_and(Flags::any)
                && let Some(first) = seen.insert(id.clone(), index)
            {
                return Err(FormatError::cell(
                    index,
                    Some(&id),
                    format!("grade_id {id:?} is also used by cell {}", first + 1),
                ));
            }
            let cleared = clear_cell(index, cell, flags.as_ref(), language)?;
            secret_candidates.extend(cleared.secrets);
            template_texts.push(cleared.template);
            let (role, kind) = match &flags {
                Some(f) if f.solution && f.grade => (Role::Answer, Some(GradedKind::Manual)),
                Some(f) if f.solution => (Role::Answer, None),
                Some(f) if f.grade => (Role::Fixed, Some(GradedKind::Tests)),
                Some(f) if f.task => (Role::Fixed, Some(GradedKind::Task)),
                Some(f) if f.locked => (Role::Fixed, None),
                _ => (Role::Plain, None),
            };
            if let (Some(kind), Some(f)) = (kind, &flags) {
                graded.push(GradedCell {
                    index,
                    grade_id: id.clone(),
                    kind,
                    max_points: f.points.unwrap_or(0.0),
                    hidden: cleared.hidden,
                });
            }
            cells.push(CellInfo {
                role,
                flags,
                grade_id: id,
                released_text: cleared.released,
            });
        }
        let released = build(&notebook, &cells, |i| &cells[i].released_text);
        let template = build(&notebook, &cells, |i| &template_texts[i]);
        let secrets = filter_secrets(secret_candidates, &cells);
        Ok(Source {
            notebook,
            language,
            cells,
            graded,
            released,
            template,
            secrets,
        })
    }

    /// The notebook as the trainer wrote it (solutions and hidden tests in).
    pub fn notebook(&self) -> &Notebook {
        &self.notebook
    }

    pub fn language(&self) -> Language {
        self.language
    }

    /// The cells that carry points, in notebook order.
    pub fn graded_cells(&self) -> &[GradedCell] {
        &self.graded
    }

    /// The sum of all graded cells' points (nbgrader's notebook max score:
    /// grade cells and task cells).
    pub fn max_score(&self) -> f64 {
        self.graded.iter().map(|g| g.max_points).sum()
    }

    /// What engineers get (see the module docs). Holds no solution text, no
    /// hidden test and no mark scheme.
    pub fn release(&self) -> Notebook {
        self.released.clone()
    }

    /// The non-trivial lines (trimmed, at least [`MIN_SECRET_CHARS`]
    /// characters, not a marker or stub line) of every solution, hidden
    /// test and mark scheme, without lines the release shows anyway. For
    /// scrubbing feedback and checking for leaks.
    pub fn secret_lines(&self) -> Vec<String> {
        self.secrets.clone()
    }

    pub(crate) fn cell_info(&self) -> &[CellInfo] {
        &self.cells
    }

    /// Solutions out, hidden tests in: what the grader starts from.
    pub(crate) fn template(&self) -> &Notebook {
        &self.template
    }

    /// The released text of the graded cell `grade_id`.
    pub(crate) fn released_text(&self, grade_id: &str) -> Option<&str> {
        self.cells
            .iter()
            .find(|c| c.role != Role::Plain && c.grade_id == grade_id)
            .map(|c| c.released_text.as_str())
    }
}

struct ClearedCell {
    released: String,
    template: String,
    hidden: bool,
    secrets: Vec<String>,
}

fn clear_cell(
    index: usize,
    cell: &Value,
    flags: Option<&Flags>,
    language: Language,
) -> Result<ClearedCell, FormatError> {
    let id = flags
        .map(|f| f.grade_id.as_str())
        .filter(|id| !id.is_empty());
    let fail = |problem: String| FormatError::cell(index, id, problem);
    let marker_fail = |kind: Kind| move |e: MarkerError| fail(e.describe(kind));
    let text = source_of(cell);
    let code = cell_type_of(cell) == "code";
    let is = |pick: fn(&Flags) -> bool| flags.is_some_and(pick);
    let mut secrets = Vec::new();

    if code && text.contains("AUTOTEST") {
        return Err(fail(
            "nbgrader's AUTOTEST templates are not supported; write the asserts out".into(),
        ));
    }
    let stub = if code {
        language.code_stub()
    } else {
        TEXT_STUB
    };
    // Where regions may be, judged on the text as written: a solution cell
    // without markers is replaced wholly, which would hide what it held.
    let solved = markers::clear(text, SOLUTION, Some(stub)).map_err(marker_fail(SOLUTION))?;
    let hidden_found = markers::clear(text, HIDDEN_TESTS, None)
        .map_err(marker_fail(HIDDEN_TESTS))?
        .found;
    let scheme_found = markers::clear(text, MARK_SCHEME, None)
        .map_err(marker_fail(MARK_SCHEME))?
        .found;
    if solved.found && !is(|f| f.solution) {
        return Err(fail(
            "a solution region in a cell that is not a solution cell".into(),
        ));
    }
    if hidden_found && !is(|f| f.grade) {
        return Err(fail(
            "a hidden tests region in a cell that is not a grade (autograder tests) cell".into(),
        ));
    }
    if hidden_found && is(|f| f.solution) {
        return Err(fail(
            "a hidden tests region in an answer cell: the engineer's answer replaces the cell, so they would never run".into(),
        ));
    }
    if scheme_found && !is(|f| f.task) {
        return Err(fail(
            "a mark scheme region in a cell that is not a task cell".into(),
        ));
    }

    let released = if !is(|f| f.solution) {
        text.to_owned()
    } else if solved.found {
        secrets.extend(solved.removed);
        solved.text
    } else {
        secrets.extend(text.split('\n').map(str::to_owned));
        stub.to_owned()
    };
    // The grader runs this: answer cells as stubs, every other cell exactly
    // as written (hidden tests and mark schemes in).
    let template = released.clone();
    let hidden =
        markers::clear(&released, HIDDEN_TESTS, None).map_err(marker_fail(HIDDEN_TESTS))?;
    secrets.extend(hidden.removed);
    let scheme =
        markers::clear(&hidden.text, MARK_SCHEME, None).map_err(marker_fail(MARK_SCHEME))?;
    secrets.extend(scheme.removed);
    Ok(ClearedCell {
        released: scheme.text,
        template,
        hidden: hidden_found,
        secrets,
    })
}

/// The source with each cell's text from `text`, prepared like nbgrader's
/// release (module docs, steps 1, 3 and 5).
fn build<'a>(
    source: &Notebook,
    cells: &[CellInfo],
    text: impl Fn(usize) -> &'a String,
) -> Notebook {
    let mut nb = source.clone();
    if let Some(meta) = nb.metadata_mut() {
        meta.remove("celltoolbar");
    }
    for (i, cell) in nb.cells_mut().iter_mut().enumerate() {
        cell["source"] = Value::String(text(i).clone());
        if cell["cell_type"] == "code" {
            cell["outputs"] = Value::Array(Vec::new());
            cell["execution_count"] = Value::Null;
            if let Some(meta) = cell["metadata"].as_object_mut() {
                meta.remove("collapsed");
                meta.remove("scrolled");
            }
        }
        let Some(flags) = &cells[i].flags else {
            continue;
        };
        lock(cell, flags);
        if flags.grade || flags.solution || metadata::is_locked(cell) {
            let checksum = compute_checksum(cell);
            let kind = cell["cell_type"].clone();
            let nbgrader = &mut cell["metadata"]["nbgrader"];
            nbgrader["checksum"] = Value::String(checksum);
            nbgrader["cell_type"] = kind;
        }
    }
    nb
}

/// nbgrader's `LockCells` with its defaults.
fn lock(cell: &mut Value, flags: &Flags) {
    let (deletable, editable) = if flags.solution {
        (Some(false), None)
    } else if flags.grade || flags.locked {
        (Some(false), Some(false))
    } else {
        (None, None)
    };
    let meta = &mut cell["metadata"];
    if let Some(d) = deletable {
        meta["deletable"] = Value::Bool(d);
    }
    if let Some(e) = editable {
        meta["editable"] = Value::Bool(e);
    }
}

fn filter_secrets(candidates: Vec<String>, cells: &[CellInfo]) -> Vec<String> {
    let public: HashSet<&str> = cells
        .iter()
        .flat_map(|c| c.released_text.split('\n'))
        .map(str::trim)
        .collect();
    let stubs: HashSet<&str> = [Language::Python, Language::Rust, Language::Candle]
        .iter()
        .flat_map(|l| l.code_stub().split('\n'))
        .chain(TEXT_STUB.split('\n'))
        .map(str::trim)
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in candidates {
        let line = line.trim();
        if line.chars().count() < MIN_SECRET_CHARS
            || markers::ALL.iter().any(|m| line.contains(m))
            || stubs.contains(line)
            || public.contains(line)
        {
            continue;
        }
        if seen.insert(line.to_owned()) {
            out.push(line.to_owned());
        }
    }
    out
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
