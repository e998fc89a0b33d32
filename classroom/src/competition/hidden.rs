//! What a failed run on the hidden test set may tell its team.
//!
//! The run read data no participant may see, and whatever it prints can
//! carry that data out: an exception's message, a verbose traceback's
//! local variables, an exception class named at run time, the values it
//! wrote in a refused `submission.csv` (which the checks would quote back).
//! Kaggle answers with the category alone. We keep what makes a failure
//! debuggable and cannot carry data: the category, the places in the
//! notebook, and the notebook's own source lines, each shown only if it is
//! verbatim in the notebook the participant sent. A message, a line or a
//! value that is not is replaced by [`WITHHELD`] or `…`. What is left is a
//! choice among things the participant wrote (a few bits a run, like the
//! category itself), never text computed from the data.

use super::code::Failure;
use super::problems::{Problem, Rejection};

/// What replaces an error message the notebook's source does not hold.
pub const WITHHELD: &str = "(not shown: a run on the hidden test set shows no values it computed)";

/// Problems of a refused file shown for a run (each names a line).
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
    "ErrorRuntime",
    "ParseError",
    "Error",
    "panic",
    "CompilationError",
];

/// `failure` as its team may see it, given the notebook's code (its code
/// cells' sources) and the columns the competition names.
pub fn withhold(failure: Failure, source: &str, columns: &[&str]) -> Failure {
    match failure {
        Failure::Error {
            ename,
            evalue,
            traceback,
        } => {
            let source = Source::new(source);
            let ename = source.name(&ename);
            let evalue = source.message(&evalue);
            let traceback = source.traceback(&traceback, &ename, &evalue);
            Failure::Error {
                ename,
                evalue,
                traceback,
            }
        }
        Failure::Format(rejection) => Failure::Format(problems(rejection, columns)),
        other => other,
    }
}

/// The notebook's code, to tell what it holds verbatim.
struct Source<'a> {
    text: &'a str,
    lines: std::collections::HashSet<&'a str>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        Source {
            text,
            lines: text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect(),
        }
    }

    fn name(&self, ename: &str) -> String {
        let plain = !ename.is_empty()
            && ename.len() <= 80
            && ename
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if plain && (KNOWN_NAMES.contains(&ename) || self.text.contains(ename)) {
            ename.to_owned()
        } else {
            "Error".to_owned()
        }
    }

    /// The message if the notebook holds it (a string it raises), without
    /// the kernel's position suffix and quotes; else [`WITHHELD`].
    fn message(&self, evalue: &str) -> String {
        let core = strip_position(evalue.trim());
        // A kernel's own words before it (`Runtime error: `), then the
        // notebook's string.
        let after_words = core
            .split_once(": ")
            .filter(|(words, _)| {
                words.len() <= 40 && words.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
            })
            .map(|(_, rest)| rest);
        let held = |s: &str| {
            let s = s.trim().trim_matches(|c| c == '"' || c == '\'');
            !s.is_empty() && self.text.contains(s)
        };
        if held(core) || after_words.is_some_and(held) {
            evalue.trim().to_owned()
        } else {
            WITHHELD.to_owned()
        }
    }

    /// The traceback's places and the notebook's own lines; anything else
    /// (a value, a library's line, a verbose frame's locals) becomes `…`.
    fn traceback(&self, traceback: &[String], ename: &str, evalue: &str) -> Vec<String> {
        let mut shown: Vec<String> = Vec::new();
        for raw in traceback.iter().flat_map(|l| l.lines()) {
            let line = strip_ansi(raw);
            let kept = if self.is_safe(&line) {
                line
            } else {
                "…".to_owned()
            };
            if !(kept == "…" && shown.last().is_some_and(|l| l == "…")) {
                shown.push(kept);
            }
        }
        while shown
            .last()
            .is_some_and(|l| l == "…" || l.trim().is_empty())
        {
            shown.pop();
        }
        shown.push(format!("{ename}: {evalue}"));
        shown
    }

    fn is_safe(&self, line: &str) -> bool {
        let t = line.trim();
        t.is_empty()
            || t.chars().all(|c| c == '-')
            || t == "Traceback (most recent call last):"
            || t.trim_end_matches(|c: char| c == '-' || c == ' ')
                == "Traceback (most recent call last)"
            || is_cell_place(t)
            || is_rhai_place(t)
            || t.chars().all(|c| c == ' ' || c == '|' || c == '^')
            || self.lines.contains(code_of(t))
    }
}

/// `Cell In[12], line 3` (IPython's place in a cell).
fn is_cell_place(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("Cell In[") else {
        return false;
    };
    let Some((n, rest)) = rest.split_once("], line ") else {
        return false;
    };
    !n.is_empty()
        && n.chars().all(|c| c.is_ascii_digit())
        && !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_digit())
}

/// `--> cell line 2, column 1` (academy-candle's place in a cell).
fn is_rhai_place(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("--> cell line ") else {
        return false;
    };
    let Some((line, column)) = rest.split_once(", column ") else {
        return false;
    };
    [line, column]
        .iter()
        .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// A traceback's source line without IPython's `----> 12` or `     12`, or
/// academy-candle's `   | `.
fn code_of(t: &str) -> &str {
    if let Some(code) = t.strip_prefix('|') {
        return code.trim();
    }
    let t = t.trim_start_matches(['-', '>']).trim_start();
    let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 && t[digits..].starts_with(' ') {
        t[digits..].trim()
    } else {
        t
    }
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

/// A refused `submission.csv` told by place only: the first few problems,
/// each with its line, its column if the competition names it, and its
/// message with every value it quotes replaced.
fn problems(rejection: Rejection, columns: &[&str]) -> Rejection {
    let total = rejection.problems.len() + rejection.more;
    let problems: Vec<Problem> = rejection
        .problems
        .into_iter()
        .take(PROBLEMS_SHOWN)
        .map(|p| Problem {
            line: p.line,
            column: p.column.filter(|c| columns.contains(&c.as_str())),
            message: unquote(&p.message),
        })
        .collect();
    Rejection {
        more: total - problems.len(),
        problems,
    }
}

/// Every `"…"` a message quotes (a value from the file) as `"…"`.
fn unquote(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("\"…\"");
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTEBOOK: &str = "import pandas as pd\ntest = pd.read_csv(\"competitions/x/test.csv\")\n\
        raise ValueError(\"the model diverged\")\nprint(test.x.sum() / 0)\n";

    fn error(ename: &str, evalue: &str, traceback: &[&str]) -> Failure {
        Failure::Error {
            ename: ename.into(),
            evalue: evalue.into(),
            traceback: traceback.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn shown(f: Failure) -> (String, String, Vec<String>) {
        match withhold(f, NOTEBOOK, &["id", "label"]) {
            Failure::Error {
                ename,
                evalue,
                traceback,
            } => (ename, evalue, traceback),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_the_notebook_holds_is_shown_and_a_computed_one_is_not() {
        let (_, evalue, _) = shown(error("ValueError", "the model diverged", &[]));
        assert_eq!(evalue, "the model diverged");
        let (_, evalue, tb) = shown(error(
            "ValueError",
            "0.8812,1.0443,-0.21",
            &["ValueError: 0.8812,1.0443,-0.21"],
        ));
        assert_eq!(evalue, WITHHELD);
        assert!(!tb.concat().contains("0.8812"), "{tb:?}");
        // Rhai's position suffix and quotes.
        let (_, evalue, _) = shown(error(
            "ErrorRuntime",
            "\"the model diverged\" (line 3, position 1)",
            &[],
        ));
        assert!(evalue.starts_with("\"the model diverged\""));
    }

    #[test]
    fn a_traceback_keeps_its_places_and_the_notebooks_lines_only() {
        let tb = [
            "\u{1b}[0;31m---------------------------------------------------------------------------\u{1b}[0m",
            "\u{1b}[0;31mZeroDivisionError\u{1b}[0m                         Traceback (most recent call last)",
            "Cell In[4], line 1",
            "\u{1b}[0;32m----> 1\u{1b}[0m print(test.x.sum() / 0)",
            "x = 0.8812  # a verbose frame's local",
            "File /usr/lib/python3/dist-packages/leak_0.8812.py:3, in f()",
            "\u{1b}[0;31mZeroDivisionError\u{1b}[0m: float division by zero",
        ];
        let (ename, evalue, shown) =
            shown(error("ZeroDivisionError", "float division by zero", &tb));
        assert_eq!(ename, "ZeroDivisionError");
        assert_eq!(evalue, WITHHELD);
        assert_eq!(
            shown,
            [
                "---------------------------------------------------------------------------",
                "…",
                "Cell In[4], line 1",
                "----> 1 print(test.x.sum() / 0)",
                &format!("ZeroDivisionError: {WITHHELD}"),
            ]
        );
    }

    #[test]
    fn academy_candles_error_keeps_the_notebooks_string_and_line() {
        let source = "let x = 1;\nthrow \"boom from my notebook\";\n";
        let tb = [
            "Runtime error: boom from my notebook (line 2, position 1)",
            "  --> cell line 2, column 1",
            "   | throw \"boom from my notebook\";",
            "   | ^",
        ];
        let Failure::Error {
            evalue, traceback, ..
        } = withhold(
            error("RuntimeError", "Runtime error: boom from my notebook", &tb),
            source,
            &[],
        )
        else {
            panic!()
        };
        assert_eq!(evalue, "Runtime error: boom from my notebook");
        assert_eq!(traceback[1..4], tb[1..4]);
        // The same shape with a computed value: withheld.
        let Failure::Error { evalue, .. } = withhold(
            error("RuntimeError", "Runtime error: 0.8812", &[]),
            source,
            &[],
        ) else {
            panic!()
        };
        assert_eq!(evalue, WITHHELD);
    }

    #[test]
    fn an_exception_named_at_run_time_is_just_an_error() {
        assert_eq!(shown(error("E_0_8812_1_0443", "x", &[])).0, "Error");
        assert_eq!(shown(error("KeyError", "'x'", &[])).0, "KeyError");
        assert_eq!(shown(error("a b", "x", &[])).0, "Error");
    }

    #[test]
    fn a_refused_file_is_told_by_place_not_by_value() {
        let mut p = super::super::problems::Problems::default();
        for line in 2..10 {
            p.add(
                Some(line),
                Some("label"),
                "\"0.8812\" is not one of the classes \"a\\\"b\", \"c\"",
            );
        }
        p.add(None, Some("0.8812 as a header"), "unknown column");
        let Failure::Format(r) =
            withhold(Failure::Format(p.rejection()), NOTEBOOK, &["id", "label"])
        else {
            panic!()
        };
        assert_eq!(r.problems.len(), PROBLEMS_SHOWN);
        assert_eq!(r.more, 9 - PROBLEMS_SHOWN);
        assert_eq!(
            r.problems[0].message,
            "\"…\" is not one of the classes \"…\", \"…\""
        );
        assert_eq!(r.problems[0].column.as_deref(), Some("label"));
        let unknown = withhold(
            Failure::Format(Rejection {
                problems: vec![Problem {
                    line: None,
                    column: Some("0.8812".into()),
                    message: "unknown column".into(),
                }],
                more: 0,
            }),
            NOTEBOOK,
            &["id"],
        );
        assert!(!format!("{unknown:?}").contains("0.8812"));
    }

    #[test]
    fn other_categories_pass_unchanged() {
        let f = Failure::Timeout { limit_s: 60 };
        assert_eq!(withhold(f.clone(), NOTEBOOK, &[]), f);
    }
}
