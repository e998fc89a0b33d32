//! The three kinds of marked region in a source cell, and how nbgrader's
//! `ClearSolutions`, `ClearHiddenTests` and `ClearMarkScheme` clear them.
//!
//! The exact rules (nbgrader 0.9, default delimiters):
//! - The cell source is split on `"\n"` and joined back with `"\n"`.
//! - A line *containing* `BEGIN SOLUTION` (`BEGIN HIDDEN TESTS`,
//!   `BEGIN MARK SCHEME`) opens a region, wherever the text sits on the
//!   line and whatever comment mark precedes it (`### BEGIN SOLUTION` in
//!   Python, `// BEGIN SOLUTION` in Rust and Rhai). Matching is
//!   case-sensitive. The begin test comes first, so a line holding both
//!   markers opens a region.
//! - A line containing the end marker closes it. Marker lines never reach
//!   the output.
//! - A begin inside an open region is an error ("nested"), and so is a
//!   region still open at the end of the cell.
//! - A solution region is replaced by the code stub (code cells) or the
//!   text stub (markdown), each stub line prefixed with the begin line's
//!   leading whitespace (Python's `re.match(r"\s*", line)`). Hidden-test
//!   and mark-scheme regions are removed.
//! - Mark schemes may not contain an image attachment
//!   (`!\[.*\]\(attachment:.+?\)`, `check_attachment_leakage`): the
//!   attachment itself would stay in the released cell.
//!
//! One deliberate difference: nbgrader drops an end-marker line that has
//! no open region without a word. We refuse it, because that is what a
//! region ended early looks like, e.g. a solution line
//! `print("END SOLUTION")` closes the region and the rest of the solution
//! would be released, followed by the real, now stray, end marker.

pub const BEGIN_SOLUTION: &str = "BEGIN SOLUTION";
pub const END_SOLUTION: &str = "END SOLUTION";
pub const BEGIN_HIDDEN_TESTS: &str = "BEGIN HIDDEN TESTS";
pub const END_HIDDEN_TESTS: &str = "END HIDDEN TESTS";
pub const BEGIN_MARK_SCHEME: &str = "BEGIN MARK SCHEME";
pub const END_MARK_SCHEME: &str = "END MARK SCHEME";

/// Every marker, for telling marker lines from content.
pub const ALL: [&str; 6] = [
    BEGIN_SOLUTION,
    END_SOLUTION,
    BEGIN_HIDDEN_TESTS,
    END_HIDDEN_TESTS,
    BEGIN_MARK_SCHEME,
    END_MARK_SCHEME,
];

/// A kind of region: its markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub begin: &'static str,
    pub end: &'static str,
    pub name: &'static str,
}

pub const SOLUTION: Kind = Kind {
    begin: BEGIN_SOLUTION,
    end: END_SOLUTION,
    name: "solution",
};
pub const HIDDEN_TESTS: Kind = Kind {
    begin: BEGIN_HIDDEN_TESTS,
    end: END_HIDDEN_TESTS,
    name: "hidden tests",
};
pub const MARK_SCHEME: Kind = Kind {
    begin: BEGIN_MARK_SCHEME,
    end: END_MARK_SCHEME,
    name: "mark scheme",
};

/// A cell's text with one kind of region cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleared {
    pub text: String,
    /// Whether the text had at least one region.
    pub found: bool,
    /// The lines that were inside regions (marker lines excluded).
    pub removed: Vec<String>,
}

/// Why a cell's markers can't be cleared; lines count from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerError {
    Nested { line: usize },
    Unterminated,
    StrayEnd { line: usize },
    Attachment { line: usize },
}

impl MarkerError {
    /// The problem in words, for [`crate::FormatError::Cell`].
    pub fn describe(&self, kind: Kind) -> String {
        match self {
            MarkerError::Nested { line } => {
                format!(
                    "line {line}: {:?} inside an open {} region",
                    kind.begin, kind.name
                )
            }
            MarkerError::Unterminated => {
                format!("a {} region has no {:?} line", kind.name, kind.end)
            }
            MarkerError::StrayEnd { line } => format!(
                "line {line}: {:?} without an open region (does a line inside the region contain the end marker?)",
                kind.end
            ),
            MarkerError::Attachment { line } => format!(
                "line {line}: the mark scheme holds an image attachment, which would be released with the cell; embed the image instead"
            ),
        }
    }
}

/// Clears every `kind` region of `text`: replaced by `stub` (indented like
/// the begin line) when given, removed otherwise.
pub fn clear(text: &str, kind: Kind, stub: Option<&str>) -> Result<Cleared, MarkerError> {
    let mut out: Vec<String> = Vec::new();
    let mut removed = Vec::new();
    let mut open = false;
    let mut found = false;
    for (i, line) in text.split('\n').enumerate() {
        if line.contains(kind.begin) {
            if open {
                return Err(MarkerError::Nested { line: i + 1 });
            }
            open = true;
            found = true;
            if let Some(stub) = stub {
                let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                out.extend(stub.split('\n').map(|s| format!("{indent}{s}")));
            }
        } else if line.contains(kind.end) {
            if !open {
                return Err(MarkerError::StrayEnd { line: i + 1 });
            }
            open = false;
        } else if open {
            if kind == MARK_SCHEME && has_attachment(line) {
                return Err(MarkerError::Attachment { line: i + 1 });
            }
            removed.push(line.to_owned());
        } else {
            out.push(line.to_owned());
        }
    }
    if open {
        return Err(MarkerError::Unterminated);
    }
    Ok(Cleared {
        text: out.join("\n"),
        found,
        removed,
    })
}

/// nbgrader's `!\[.*\]\(attachment:.+?\)`.
fn has_attachment(line: &str) -> bool {
    let Some(bang) = line.find("![") else {
        return false;
    };
    let rest = &line[bang + 2..];
    let Some(link) = rest.find("](attachment:") else {
        return false;
    };
    let after = &rest[link + "](attachment:".len()..];
    after.char_indices().any(|(i, c)| c == ')' && i > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solution_region_is_replaced_by_the_stub_indented_like_its_begin_line() {
        let text = "def f(x):\n    ### BEGIN SOLUTION\n    return x * 2\n    ### END SOLUTION\n";
        let cleared = clear(
            text,
            SOLUTION,
            Some("# YOUR CODE HERE\nraise NotImplementedError()"),
        )
        .unwrap();
        assert_eq!(
            cleared.text,
            "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
        );
        assert!(cleared.found);
        assert_eq!(cleared.removed, vec!["    return x * 2"]);
    }

    #[test]
    fn markers_match_as_substrings_with_any_comment_mark() {
        let text = "fn f() -> i32 {\n\t// BEGIN SOLUTION\n\t42\n\t// END SOLUTION\n}";
        let cleared = clear(text, SOLUTION, Some("// YOUR CODE HERE\ntodo!()")).unwrap();
        assert_eq!(
            cleared.text,
            "fn f() -> i32 {\n\t// YOUR CODE HERE\n\ttodo!()\n}"
        );
    }

    #[test]
    fn hidden_test_regions_are_removed_with_their_markers() {
        let text =
            "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(50) == 100\n### END HIDDEN TESTS";
        let cleared = clear(text, HIDDEN_TESTS, None).unwrap();
        assert_eq!(cleared.text, "assert f(1) == 2");
        assert_eq!(cleared.removed, vec!["assert f(50) == 100"]);
        let none = clear("x = 1", HIDDEN_TESTS, None).unwrap();
        assert!(!none.found);
        assert_eq!(none.text, "x = 1");
    }

    #[test]
    fn nested_unterminated_and_stray_markers_are_refused() {
        let nested = "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION";
        assert_eq!(
            clear(nested, SOLUTION, Some("")),
            Err(MarkerError::Nested { line: 2 })
        );
        assert_eq!(
            clear("# BEGIN SOLUTION\nx", SOLUTION, Some("")),
            Err(MarkerError::Unterminated)
        );
        let early = "# BEGIN SOLUTION\nprint('END SOLUTION')\nsecret()\n# END SOLUTION";
        assert_eq!(
            clear(early, SOLUTION, Some("")),
            Err(MarkerError::StrayEnd { line: 4 })
        );
    }

    #[test]
    fn a_mark_scheme_holding_an_attachment_is_refused() {
        let text = "=== BEGIN MARK SCHEME ===\n![x](attachment:img.png)\n=== END MARK SCHEME ===";
        assert_eq!(
            clear(text, MARK_SCHEME, None),
            Err(MarkerError::Attachment { line: 2 })
        );
        assert!(!has_attachment("![x](attachment:)"));
        assert!(has_attachment("see ![](attachment:a.png) here"));
    }
}
