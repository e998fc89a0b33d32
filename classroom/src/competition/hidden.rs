//! What a failed run on the hidden test set may tell its team.
//!
//! The run read data no participant may see, and whatever it prints can
//! carry that data out: an exception's message, a traceback (which a
//! notebook can make say anything: IPython prints what an exception's
//! `_render_traceback_` returns), an exception class named at run time, the
//! values, line numbers and counts the checks would quote from a refused
//! `submission.csv`. Kaggle answers with the category alone. We show what
//! makes a failure findable and cannot carry data, rebuilt by us rather
//! than filtered from the kernel's text:
//!
//! - the place: which cell failed and, when the kernel names a line in
//!   it that exists, that line as *our copy* of the notebook has it;
//! - the exception's name if it is a known one or a whole name the
//!   notebook's source holds;
//! - the message only if it is exactly one of the notebook's own string
//!   literals (`raise ValueError("diverged")`), else [`WITHHELD`];
//! - for a refused file, at most three kinds of problem, with no line,
//!   no count and no value.
//!
//! What is left is a choice among things the participant wrote (a few bits
//! a run, like the category, the rounded runtime and the score itself).

use std::collections::HashSet;

use super::code::Failure;
use super::problems::{Problem, Rejection};

/// What replaces an error message the notebook's source does not hold.
pub const WITHHELD: &str = "(not shown: a run on the hidden test set shows no values it computed)";

/// Kinds of problem of a refused file shown for a run.
const PROBLEMS_SHOWN: usize = 3;

/// Python's and the academy kernels' own exception names, shown even when
/// the notebook does not name them.
const KNOWN_NAMES: &[&str] = &[
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "EOFError",
    "Exception",
    "FileNotFoundError",
    "FloatingPointError",
    "ImportError",
    "IndexError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "ModuleNotFoundError",
    "NameError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "SyntaxError",
    "IndentationError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "ValueError",
    "ZeroDivisionError",
    "FunctionNotFound",
    "ParseError",
    "ResourceLimit",
    "Error",
    "panic",
    "CompilationError",
];

/// The notebook as the run executed it: its code cells in run order
/// (their index in the notebook, their source), and which of them failed
/// (a position in `cells`).
#[derive(Debug, Clone, Copy)]
pub struct Ran<'a> {
    pub cells: &'a [(usize, String)],
    pub failing: Option<usize>,
}

/// `failure` as its team may see it; `columns` are the names the
/// competition gives its columns (the only ones a problem may name).
pub fn withhold(failure: Failure, ran: Ran<'_>, columns: &[&str]) -> Failure {
    match failure {
        Failure::Error {
            ename,
            evalue,
            traceback,
        } => {
            let source = Source::new(ran.cells);
            let ename = source.name(&ename);
            let evalue = source.message(&evalue);
            let mut shown = place(ran, &traceback);
            shown.push(format!("{ename}: {evalue}"));
            Failure::Error {
                ename,
                evalue,
                traceback: shown,
            }
        }
        Failure::Format(rejection) => Failure::Format(withhold_problems(rejection, columns)),
        other => other,
    }
}

/// The notebook's words: its identifiers and its string literals, whole.
struct Source {
    names: HashSet<String>,
    literals: HashSet<String>,
}

impl Source {
    fn new(cells: &[(usize, String)]) -> Self {
        let mut names = HashSet::new();
        let mut literals = HashSet::new();
        for (_, code) in cells {
            for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !word.is_empty() {
                    names.insert(word.to_owned());
                }
            }
            literals.extend(string_literals(code));
        }
        Source { names, literals }
    }

    fn name(&self, ename: &str) -> String {
        if KNOWN_NAMES.contains(&ename) || self.names.contains(ename) {
            ename.to_owned()
        } else {
            "Error".to_owned()
        }
    }

    /// The message if it is one of the notebook's string literals, after
    /// the kernel's own words before it (`Runtime error: `) and a position
    /// after it (` (line 2, position 1)`); else [`WITHHELD`].
    fn message(&self, evalue: &str) -> String {
        let core = strip_position(evalue.trim());
        let after_words = core
            .split_once(": ")
            .filter(|(words, _)| {
                words.len() <= 40 && words.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
            })
            .map(|(_, rest)| rest);
        let held = |s: &str| {
            let s = s.trim();
            let s = s
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(s);
            !s.is_empty() && self.literals.contains(s)
        };
        if held(core) || after_words.is_some_and(held) {
            evalue.trim().to_owned()
        } else {
            WITHHELD.to_owned()
        }
    }
}

/// The string literals of `code`, between matching single or double
/// quotes on one line (escapes kept as written).
fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '"' && c != '\'' {
                continue;
            }
            let mut text = String::new();
            let mut escaped = false;
            let mut closed = false;
            for d in chars.by_ref() {
                match (escaped, d) {
                    (false, '\\') => {
                        escaped = true;
                        text.push(d);
                    }
                    (false, q) if q == c => {
                        closed = true;
                        break;
                    }
                    _ => {
                        escaped = false;
                        text.push(d);
                    }
                }
            }
            if closed && !text.is_empty() {
                out.push(text);
            }
        }
    }
    out
}

/// Where the run failed, from our copy of the notebook: the failing cell,
/// and the line the kernel's last place names when that cell has it.
/// IPython's `Cell In[N], line M` names the N-th cell run (a function
/// defined in an earlier cell fails there); academy-candle's
/// `--> cell line M, column C` the failing one. A place the kernel forges
/// can only pick one of the notebook's own lines.
fn place(ran: Ran<'_>, traceback: &[String]) -> Vec<String> {
    let Some(failing) = ran.failing.filter(|i| *i < ran.cells.len()) else {
        return Vec::new();
    };
    let mut at: (usize, Option<usize>) = (failing, None);
    for raw in traceback.iter().flat_map(|l| l.lines()) {
        let line = strip_ansi(raw);
        let t = line.trim();
        if let Some((n, m)) = ipython_place(t) {
            let cell = n
                .checked_sub(1)
                .filter(|i| *i < ran.cells.len())
                .unwrap_or(failing);
            at = (cell, Some(m));
        } else if let Some(m) = rhai_place(t) {
            at = (failing, Some(m));
        }
    }
    let (index, code) = &ran.cells[at.0];
    let line =
        at.1.and_then(|m| Some((m, code.lines().nth(m.checked_sub(1)?)?)));
    match line {
        Some((m, text)) => vec![
            format!("in the notebook's cell {}, line {m}:", index + 1),
            format!("    {}", text.trim_end()),
        ],
        None => vec![format!("in the notebook's cell {}", index + 1)],
    }
}

fn number(s: &str) -> Option<usize> {
    (!s.is_empty() && s.len() <= 9 && s.chars().all(|c| c.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `Cell In[12], line 3`: (12, 3).
fn ipython_place(t: &str) -> Option<(usize, usize)> {
    let rest = t.strip_prefix("Cell In[")?;
    let (n, rest) = rest.split_once("], line ")?;
    Some((number(n)?, number(rest)?))
}

/// `--> cell line 2, column 1`: 2.
fn rhai_place(t: &str) -> Option<usize> {
    let rest = t.strip_prefix("--> cell line ")?;
    let (line, column) = rest.split_once(", column ")?;
    number(column)?;
    number(line)
}

/// Terminal colour codes (`ESC [ … m`) out of a line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A Rhai message's ` (line 2, position 1)` off its end.
fn strip_position(s: &str) -> &str {
    match s.rfind(" (line ") {
        Some(at) if s.ends_with(')') => &s[..at],
        _ => s,
    }
}

/// A refused `submission.csv` told by kind only: at most three kinds of
/// problem, each without its line, with its column only if the
/// competition names it, and with every value and number it quotes
/// replaced; no count of the rest.
pub fn withhold_problems(rejection: Rejection, columns: &[&str]) -> Rejection {
    let mut problems: Vec<Problem> = Vec::new();
    for p in rejection.problems {
        let shown = Problem {
            line: None,
            column: p.column.filter(|c| columns.contains(&c.as_str())),
            message: without_values(&p.message),
        };
        if !problems.contains(&shown) {
            problems.push(shown);
        }
        if problems.len() == PROBLEMS_SHOWN {
            break;
        }
    }
    Rejection { problems, more: 0 }
}

/// Every quoted value (`"…"`) and every number of a message as `…`.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            out.push('…');
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => escaped = false,
                }
            }
        } else if c.is_ascii_digit() {
            out.push('…');
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_digit() || *d == '.' || *d == ',')
            {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells() -> Vec<(usize, String)> {
        vec![
            (0, "%xmode Verbose".to_owned()),
            (
                2,
                "import csv\nrows = list(csv.DictReader(open(\"competitions/x/test.csv\")))\n\
                 raise ValueError(\"the model diverged\")"
                    .to_owned(),
            ),
            (3, "x = 1\nthrow \"boom from my notebook\";".to_owned()),
        ]
    }

    fn error(ename: &str, evalue: &str, traceback: &[&str]) -> Failure {
        Failure::Error {
            ename: ename.into(),
            evalue: evalue.into(),
            traceback: traceback.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn shown(f: Failure, failing: usize) -> (String, String, Vec<String>) {
        let cells = cells();
        let ran = Ran {
            cells: &cells,
            failing: Some(failing),
        };
        match withhold(f, ran, &["id", "label"]) {
            Failure::Error {
                ename,
                evalue,
                traceback,
            } => (ename, evalue, traceback),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_is_shown_only_when_it_is_one_of_the_notebooks_strings() {
        assert_eq!(
            shown(error("ValueError", "the model diverged", &[]), 1).1,
            "the model diverged"
        );
        // A substring of the source is not enough (a long string of digits holds them all).
        assert_eq!(shown(error("ValueError", "model", &[]), 1).1, WITHHELD);
        assert_eq!(
            shown(error("ValueError", "0.8812,1.0443", &[]), 1).1,
            WITHHELD
        );
        // academy-candle's own words before the string.
        let (_, evalue, _) = shown(
            error("RuntimeError", "Runtime error: boom from my notebook", &[]),
            2,
        );
        assert_eq!(evalue, "Runtime error: boom from my notebook");
    }

    #[test]
    fn the_traceback_is_rebuilt_from_our_copy_of_the_notebook() {
        let forged = [
            "Traceback (most recent call last)",
            "Cell In[2], line 3",
            "----> 3 raise ValueError(secret)  # the kernel's text, whatever it says",
            "x = 0.8812  # a verbose frame's local",
            "Cell In[0881], line 2",
            "Cell In[2], line 99",
        ];
        let (ename, evalue, tb) = shown(error("ValueError", "0.8812", &forged), 1);
        assert_eq!((ename.as_str(), evalue.as_str()), ("ValueError", WITHHELD));
        // The last place names a line the cell lacks: the cell alone.
        assert_eq!(
            tb,
            [
                "in the notebook's cell 3".to_owned(),
                format!("ValueError: {WITHHELD}")
            ]
        );
        let (_, _, tb) = shown(error("ValueError", "x", &forged[..3]), 1);
        assert_eq!(
            tb,
            [
                "in the notebook's cell 3, line 3:".to_owned(),
                "    raise ValueError(\"the model diverged\")".to_owned(),
                format!("ValueError: {WITHHELD}"),
            ]
        );
        let rhai = [
            "Runtime error: boom (line 2, position 1)",
            "  --> cell line 2, column 1",
        ];
        let (_, _, tb) = shown(error("RuntimeError", "Runtime error: boom", &rhai), 2);
        assert_eq!(
            tb[..2],
            [
                "in the notebook's cell 4, line 2:",
                "    throw \"boom from my notebook\";"
            ]
        );
    }

    #[test]
    fn an_exception_named_at_run_time_is_just_an_error() {
        assert_eq!(shown(error("E_0_8812_1_0443", "x", &[]), 1).0, "Error");
        assert_eq!(shown(error("KeyError", "'x'", &[]), 1).0, "KeyError");
        assert_eq!(shown(error("DictReader", "x", &[]), 1).0, "DictReader");
        assert_eq!(shown(error("Dict", "x", &[]), 1).0, "Error");
    }

    #[test]
    fn a_refused_file_is_told_by_kind_not_by_value_line_or_count() {
        let mut p = super::super::problems::Problems::default();
        for line in 2..10 {
            p.add(
                Some(line),
                Some("label"),
                format!("id \"0.88{line}\" is also on line 1{line}"),
            );
        }
        p.add(None, Some("0.8812"), "is not a column of this competition");
        p.add(None, None, "the file has 4999 rows; the test set has 5000");
        let r = withhold_problems(p.rejection(), &["id", "label"]);
        assert_eq!(r.more, 0);
        assert_eq!(
            r.problems,
            [
                Problem {
                    line: None,
                    column: Some("label".into()),
                    message: "id … is also on line …".into()
                },
                Problem {
                    line: None,
                    column: None,
                    message: "is not a column of this competition".into()
                },
                Problem {
                    line: None,
                    column: None,
                    message: "the file has … rows; the test set has …".into()
                },
            ]
        );
    }

    #[test]
    fn other_categories_pass_unchanged() {
        let f = Failure::Timeout { limit_s: 60 };
        let cells = cells();
        let ran = Ran {
            cells: &cells,
            failing: None,
        };
        assert_eq!(withhold(f.clone(), ran, &[]), f);
    }
}
