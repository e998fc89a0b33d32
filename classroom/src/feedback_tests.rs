use serde_json::Value;

use super::*;
use crate::fixtures::{self, answered, error, execute, result, stream};
use crate::score::score;

const HIDDEN_LINE_TEXT: &str = "assert double(21) == 42, \"secret case fails\"";

/// Python fixture, answered; `run` gives outputs per grade_id.
fn graded(
    run: impl Fn(Option<&str>) -> Vec<Value>,
    penalty: f64,
    reveal: bool,
) -> (Source, Feedback) {
    let source = fixtures::python();
    let submission = answered(
        &source,
        &[
            ("double", "def double(x):\n    return x * 2"),
            ("explain", "It adds x to itself."),
        ],
    );
    let rebuilt = source.rebuild(&submission).notebook;
    let executed = execute(&rebuilt, |id, _| run(id));
    let scores = score(&source, &executed);
    let fb = feedback(&source, &executed, &scores, penalty, reveal);
    (source, fb)
}

fn cell<'a>(fb: &'a Feedback, id: &str) -> &'a FeedbackCell {
    fb.cells
        .iter()
        .find(|c| c.grade_id == id)
        .expect("cell in feedback")
}

fn failing_hidden_test(id: Option<&str>) -> Vec<Value> {
    match id {
        Some("double-tests") => vec![error(
            "AssertionError",
            "secret case fails",
            &[
                "\u{1b}[0;31m---------\u{1b}[0m",
                &format!("----> 4 {HIDDEN_LINE_TEXT}"),
            ],
        )],
        _ => vec![],
    }
}

#[test]
fn a_cell_with_hidden_tests_shows_no_output_and_withholds_its_result_until_revealed() {
    let (_, fb) = graded(failing_hidden_test, 0.0, false);
    let hidden = cell(&fb, "double-tests");
    assert_eq!(hidden.status, CellStatus::Withheld);
    assert_eq!(hidden.points, None);
    assert_eq!(hidden.output, "");
    assert!(fb.hidden_withheld);
    assert_eq!(fb.score, None);
    let (_, shown) = graded(failing_hidden_test, 0.0, true);
    let hidden = cell(&shown, "double-tests");
    assert_eq!(hidden.status, CellStatus::Failed);
    assert_eq!(hidden.points, Some(0.0));
    assert_eq!(hidden.output, "", "hidden-test output is never shown");
    let json = serde_json::to_string(&shown).unwrap();
    assert!(!json.contains("21) == 42"));
}

#[test]
fn public_cells_show_what_they_printed_without_terminal_colours() {
    let (_, fb) = graded(
        |id| match id {
            Some("double-partial") => vec![
                stream("stdout", "checking\n"),
                error(
                    "ValueError",
                    "bad",
                    &["\u{1b}[1;31mTraceback\u{1b}[0m", "line 2"],
                ),
            ],
            _ => vec![],
        },
        0.0,
        false,
    );
    let partial = cell(&fb, "double-partial");
    assert_eq!(partial.status, CellStatus::Failed);
    assert_eq!(
        partial.output,
        "checking\nValueError: bad\nTraceback\nline 2\n"
    );
}

#[test]
fn lines_containing_a_secret_line_are_replaced() {
    let (source, fb) = graded(
        |id| match id {
            Some("double-partial") => vec![
                stream("stdout", &format!("peek: {HIDDEN_LINE_TEXT}\nfine\n")),
                result("2"),
            ],
            _ => vec![],
        },
        0.0,
        true,
    );
    assert!(source.secret_lines().iter().any(|s| s == HIDDEN_LINE_TEXT));
    let partial = cell(&fb, "double-partial");
    assert_eq!(partial.output, "[hidden]\nfine\n2\n");
    assert_eq!(partial.status, CellStatus::Partial);
    assert_eq!(partial.points, Some(2.0));
}

#[test]
fn long_output_is_capped_at_twenty_kilobytes() {
    let long = "é".repeat(100_000);
    let (_, fb) = graded(
        move |id| match id {
            Some("double-partial") => vec![
                stream("stdout", &format!("{long}\n")),
                stream("stdout", "tail\n"),
            ],
            _ => vec![],
        },
        0.0,
        false,
    );
    let output = &cell(&fb, "double-partial").output;
    assert!(output.len() <= OUTPUT_CAP, "{}", output.len());
    assert!(output.ends_with(TRUNCATED));
    assert!(!output.contains("tail"));
}

#[test]
fn the_total_shows_only_when_every_cell_is_scored_and_visible() {
    let (source, fb) = graded(|_| vec![], 1.0, true);
    assert_eq!(fb.score, None, "manual answers are pending");
    assert_eq!(cell(&fb, "explain").status, CellStatus::Pending);
    assert_eq!(
        cell(&fb, "describe").status,
        CellStatus::Failed,
        "unchanged stub"
    );
    assert_eq!(fb.penalty, 1.0);
    assert_eq!(fb.max_score, source.max_score());

    let candle = fixtures::candle();
    let rebuilt = candle.rebuild(&candle.release()).notebook;
    let executed = execute(&rebuilt, |_, _| vec![]);
    let scores = score(&candle, &executed);
    let shown = feedback(&candle, &executed, &scores, 0.25, true);
    assert_eq!(shown.score, Some(0.75));
    assert_eq!(shown.cells[0].status, CellStatus::Passed);
    let hidden = feedback(&candle, &executed, &scores, 0.25, false);
    assert_eq!((hidden.score, hidden.penalty), (None, 0.0));
    let huge = feedback(&candle, &executed, &scores, 5.0, true);
    assert_eq!(huge.score, Some(0.0));
}

#[test]
fn feedback_serialises_statuses_and_kinds_in_snake_case() {
    let (_, fb) = graded(|_| vec![], 0.0, false);
    let v = serde_json::to_value(&fb).unwrap();
    assert_eq!(v["cells"][0]["status"], "withheld");
    assert_eq!(v["cells"][0]["kind"], "tests");
    assert_eq!(v["cells"][2]["kind"], "manual");
    assert_eq!(v["cells"][4]["status"], "pending");
}

#[test]
fn ansi_sequences_of_every_kind_are_removed() {
    assert_eq!(strip_ansi("\u{1b}[0;31mred\u{1b}[0m"), "red");
    assert_eq!(
        strip_ansi("\u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{1b}\\ end"),
        "link end"
    );
    assert_eq!(strip_ansi("a\u{1b}"), "a");
    assert_eq!(strip_ansi("plain"), "plain");
}
