//! A panic that escaped a cell, as the child's runtime reports it
//! ([`super::prelude`]), turned into the cell's error.
//!
//! The location Rust gives is a line of the crate evcxr generated for the
//! cell (`src/lib.rs:109:1`), which means nothing to the user; evcxr puts
//! each statement of the cell on a line of its own there, so the line's
//! text finds the cell's line. Backtraces come only when `RUST_BACKTRACE`
//! asks, cut to the frames between the panic and evcxr's wrapper.

use crate::engine::CellError;

/// The error name of a cell that panicked.
pub const ENAME: &str = "Panic";

#[derive(Debug, PartialEq)]
pub struct Panic {
    /// Empty when the cell replaced the panic hook.
    pub message: String,
    /// `file:line:column`, as Rust reports it.
    pub location: String,
    pub backtrace: String,
}

impl Panic {
    /// Reads the runtime's record: message, location and backtrace,
    /// tab-separated, each escaped.
    pub fn parse(record: &str) -> Panic {
        let mut fields = record.split('\t').map(unescape);
        Panic {
            message: fields.next().unwrap_or_default(),
            location: fields.next().unwrap_or_default(),
            backtrace: fields.next().unwrap_or_default(),
        }
    }

    /// The cell's error; `source` is the crate evcxr compiled for `code`.
    pub fn into_cell_error(self, code: &str, source: Option<&str>) -> CellError {
        let evalue = if self.message.is_empty() {
            "the cell panicked; its message is unknown (the panic hook was replaced)".to_owned()
        } else {
            self.message
        };
        let mut traceback = vec![match where_in(&self.location, code, source) {
            Some(place) => format!("panicked at {place}:"),
            None => "panicked:".to_owned(),
        }];
        traceback.extend(evalue.lines().map(str::to_owned));
        if !self.backtrace.is_empty() {
            traceback.push("stack backtrace:".to_owned());
            traceback.extend(user_frames(&self.backtrace));
        }
        CellError {
            ename: ENAME.to_owned(),
            evalue,
            traceback,
        }
    }
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// "line 2 of the cell" when the generated line is one line of the cell;
/// the code itself when it is elsewhere (a function an earlier cell
/// defined); else Rust's location (a dependency's file).
fn where_in(location: &str, code: &str, source: Option<&str>) -> Option<String> {
    if location.is_empty() {
        return None;
    }
    let mut parts = location.rsplitn(3, ':');
    let (_column, line, file) = (parts.next(), parts.next(), parts.next());
    let generated = match (file, line.and_then(|l| l.parse::<usize>().ok()), source) {
        (Some("src/lib.rs"), Some(n), Some(source)) if n > 0 => source.lines().nth(n - 1),
        _ => None,
    };
    let Some(text) = generated.map(str::trim).filter(|t| !t.is_empty()) else {
        return Some(location.to_owned());
    };
    let mut lines = code.lines().enumerate().filter(|(_, l)| l.contains(text));
    match (lines.next(), lines.next()) {
        (Some((i, _)), None) => Some(format!("line {} of the cell", i + 1)),
        _ => Some(format!("`{text}`")),
    }
}

/// The frames from the panic's start to evcxr's wrapper around the cell.
fn user_frames(backtrace: &str) -> Vec<String> {
    let lines: Vec<&str> = backtrace.lines().collect();
    let is_frame = |l: &str| {
        let t = l.trim_start();
        t.split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    // The frame after the panic machinery's last one (and its `at` line).
    let start = lines
        .iter()
        .rposition(|l| is_frame(l) && l.contains("rust_begin_unwind"))
        .map_or(0, |i| {
            lines[i + 1..]
                .iter()
                .position(|l| is_frame(l))
                .map_or(lines.len(), |j| i + 1 + j)
        });
    let end = lines[start..]
        .iter()
        .position(|l| is_frame(l) && (l.contains("__rust_try") || l.contains(" run_user_code_")))
        .map_or(lines.len(), |i| start + i);
    lines[start..end].iter().map(|l| (*l).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str =
        "fn helper() {\n    assert!(false, \"in helper\");\n}\nlet b = 7;\nassert_eq!(1 + 1, 3);\n";

    #[test]
    fn a_record_round_trips_its_escapes() {
        let p = Panic::parse("a\\\\b\\nc\\td\tsrc/lib.rs:5:1\t");
        assert_eq!(p.message, "a\\b\nc\td");
        assert_eq!(p.location, "src/lib.rs:5:1");
        assert_eq!(p.backtrace, "");
    }

    #[test]
    fn a_failed_assert_names_its_line_of_the_cell() {
        let p = Panic::parse(
            "assertion `left == right` failed\\n  left: 2\\n right: 3\tsrc/lib.rs:5:1\t",
        );
        let e = p.into_cell_error("let b = 7; assert_eq!(1 + 1, 3);", Some(SOURCE));
        assert_eq!(e.ename, "Panic");
        assert_eq!(
            e.evalue,
            "assertion `left == right` failed\n  left: 2\n right: 3"
        );
        assert_eq!(
            e.traceback,
            [
                "panicked at line 1 of the cell:",
                "assertion `left == right` failed",
                "  left: 2",
                " right: 3"
            ]
        );
    }

    #[test]
    fn a_panic_in_an_earlier_cells_function_quotes_its_code() {
        let e =
            Panic::parse("in helper\tsrc/lib.rs:2:5\t").into_cell_error("helper();", Some(SOURCE));
        assert_eq!(
            e.traceback[0],
            "panicked at `assert!(false, \"in helper\");`:"
        );
    }

    #[test]
    fn a_panic_in_a_dependency_keeps_rusts_location() {
        let e =
            Panic::parse("boom\t/deps/foo/src/lib.rs:10:3\t").into_cell_error("x", Some(SOURCE));
        assert_eq!(e.traceback[0], "panicked at /deps/foo/src/lib.rs:10:3:");
    }

    #[test]
    fn a_replaced_hook_still_gives_an_error() {
        let e = Panic::parse("").into_cell_error("x", None);
        assert_eq!(e.ename, "Panic");
        assert!(e.evalue.contains("hook was replaced"), "{}", e.evalue);
    }

    #[test]
    fn a_backtrace_keeps_the_frames_between_the_panic_and_evcxr() {
        let backtrace = "   0: ctx::run_user_code_2::{{closure}}\n   1: std::panicking::panic_with_hook\n             at /rustc/std/src/panicking.rs:833:13\n   5: __rustc::rust_begin_unwind\n             at /rustc/std/src/panicking.rs:689:5\n   6: core::panicking::panic_fmt\n             at /rustc/core/src/panicking.rs:80:14\n   7: ctx::run_user_code_3::{{closure}}\n   9: __rust_try\n  10: run_user_code_3\n  11: evcxr::runtime::Runtime::run_loop";
        let record = format!("boom\tsrc/lib.rs:5:1\t{}", backtrace.replace('\n', "\\n"));
        let e = Panic::parse(&record).into_cell_error("x", None);
        assert_eq!(
            e.traceback[2..],
            [
                "stack backtrace:",
                "   6: core::panicking::panic_fmt",
                "             at /rustc/core/src/panicking.rs:80:14",
                "   7: ctx::run_user_code_3::{{closure}}"
            ]
        );
    }
}
