use serde_json::Value;

use super::*;
use crate::fixtures::{self, answered, error, execute, result, stream};

fn points(scores: &[CellScore], id: &str) -> Option<f64> {
    scores
        .iter()
        .find(|s| s.grade_id == id)
        .expect("scored")
        .points
}

/// Python fixture, answered, run with `outputs` for the two test cells.
fn run(tests: Vec<Value>, partial: Vec<Value>) -> Vec<CellScore> {
    let source = fixtures::python();
    let submission = answered(
        &source,
        &[
            ("double", "def double(x):\n    return x * 2"),
            ("explain", "It adds x to itself."),
            ("describe", "def describe():\n    return 'twice'"),
        ],
    );
    let rebuilt = source.rebuild(&submission).notebook;
    let executed = execute(&rebuilt, |id, _| match id {
        Some("double-tests") => tests.clone(),
        Some("double-partial") => partial.clone(),
        _ => Vec::new(),
    });
    score(&source, &executed)
}

#[test]
fn a_clean_run_scores_tests_in_full_and_leaves_answers_and_tasks_to_people() {
    let scores = run(vec![], vec![]);
    assert_eq!(points(&scores, "double-tests"), Some(2.0));
    assert_eq!(points(&scores, "double-partial"), Some(3.0));
    assert_eq!(points(&scores, "explain"), None);
    assert_eq!(points(&scores, "describe"), None);
    assert_eq!(points(&scores, "style"), None);
    assert_eq!(total(&scores), (5.0, 10.0, false));
    assert!(scores[0].hidden && !scores[1].hidden);
}

#[test]
fn an_error_output_scores_zero() {
    let scores = run(vec![error("AssertionError", "", &["boom"])], vec![]);
    assert_eq!(points(&scores, "double-tests"), Some(0.0));
}

#[test]
fn a_stderr_stream_scores_zero_as_in_nbgrader() {
    let scores = run(
        vec![
            stream("stdout", "ok\n"),
            stream("stderr", "DeprecationWarning\n"),
        ],
        vec![],
    );
    assert_eq!(points(&scores, "double-tests"), Some(0.0));
}

#[test]
fn a_numeric_result_gives_partial_credit_capped_to_the_cells_points() {
    let cases = [
        ("2", 2.0),
        (" 1.5 \n", 1.5),
        ("0", 0.0),
        ("7", 3.0),
        ("-1", 0.0),
        ("nan", 0.0),
        ("inf", 3.0),
        ("1_0", 3.0),
        ("0.5e0", 0.5),
        ("'1'", 3.0),
        ("[1, 2]", 3.0),
        ("True", 3.0),
    ];
    for (text, expected) in cases {
        let scores = run(vec![], vec![result(text)]);
        assert_eq!(
            points(&scores, "double-partial"),
            Some(expected),
            "{text:?}"
        );
    }
}

#[test]
fn an_execute_result_without_text_or_with_lines_is_read_like_nbformat() {
    let no_text = serde_json::json!({"output_type": "execute_result", "data": {"image/png": "x"}});
    assert_eq!(
        points(&run(vec![], vec![no_text]), "double-partial"),
        Some(3.0)
    );
    let lines =
        serde_json::json!({"output_type": "execute_result", "data": {"text/plain": ["1", ".5"]}});
    assert_eq!(
        points(&run(vec![], vec![lines]), "double-partial"),
        Some(1.5)
    );
}

#[test]
fn the_first_deciding_output_wins() {
    let scores = run(
        vec![],
        vec![stream("stdout", "x"), result("1"), error("E", "", &[])],
    );
    assert_eq!(points(&scores, "double-partial"), Some(1.0));
    let scores = run(vec![], vec![error("E", "", &[]), result("1")]);
    assert_eq!(points(&scores, "double-partial"), Some(0.0));
}

#[test]
fn an_unchanged_manual_answer_scores_zero_like_nbgraders_checksum_rule() {
    let source = fixtures::python();
    let rebuilt = source.rebuild(&source.release()).notebook;
    let scores = score(&source, &fixtures::execute_clean(&rebuilt));
    assert_eq!(points(&scores, "explain"), Some(0.0));
    assert_eq!(points(&scores, "describe"), Some(0.0));
    // One changed character is a response, for a person to grade.
    let edited = answered(&source, &[("explain", "YOUR ANSWER HERE ")]);
    let rebuilt = source.rebuild(&edited).notebook;
    assert_eq!(points(&score(&source, &rebuilt), "explain"), None);
}

#[test]
fn a_test_cell_the_grader_never_ran_scores_zero() {
    let source = fixtures::rust();
    let rebuilt = source.rebuild(&source.release()).notebook;
    assert_eq!(points(&score(&source, &rebuilt), "add-tests"), Some(0.0));
    let mut ran = rebuilt.clone();
    let i = crate::fixtures::index_of(ran.to_value(), "add-tests");
    ran.set_outputs(i, vec![], Some(3));
    assert_eq!(points(&score(&source, &ran), "add-tests"), Some(2.0));
}

#[test]
fn a_graded_cell_missing_from_the_executed_notebook_scores_zero() {
    let source = fixtures::candle();
    let empty = crate::Notebook::parse(br#"{"nbformat": 4, "cells": []}"#).unwrap();
    let scores = score(&source, &empty);
    assert_eq!(scores.len(), 1);
    assert_eq!(scores[0].points, Some(0.0));
    assert_eq!(total(&scores), (0.0, 1.0, true));
}

#[test]
fn floats_parse_like_pythons_float() {
    assert_eq!(python_float(" 42 "), Some(42.0));
    assert_eq!(python_float("1_000.5"), Some(1000.5));
    assert_eq!(python_float("-Infinity"), Some(f64::NEG_INFINITY));
    assert_eq!(python_float("5."), Some(5.0));
    assert_eq!(python_float(".5"), Some(0.5));
    for bad in ["", "_1", "1_", "1__0", "1_.5", "0x10", "1,5", "one"] {
        assert_eq!(python_float(bad), None, "{bad:?}");
    }
    assert!(python_float("NaN").unwrap().is_nan());
}

#[test]
fn rust_and_candle_assignments_grade_by_the_same_rules() {
    let rust = fixtures::rust();
    let submission = answered(
        &rust,
        &[("add", "fn add(a: i64, b: i64) -> i64 {\n    a - b\n}")],
    );
    let rebuilt = rust.rebuild(&submission).notebook;
    let executed = execute(&rebuilt, |id, _| match id {
        Some("add-tests") => vec![error(
            "Panic",
            "assertion `left == right` failed",
            &["thread panicked at src/lib.rs:3:1"],
        )],
        _ => Vec::new(),
    });
    let scores = score(&rust, &executed);
    assert_eq!(points(&scores, "add-tests"), Some(0.0));
    assert_eq!(
        points(&scores, "why"),
        Some(0.0),
        "the markdown answer was left as the stub"
    );

    let candle = fixtures::candle();
    let answer = "fn relu(x) {\n    if x > 0.0 { x } else { 0.0 }\n}";
    let rebuilt = candle
        .rebuild(&answered(&candle, &[("relu", answer)]))
        .notebook;
    let scores = score(&candle, &fixtures::execute_clean(&rebuilt));
    assert_eq!(total(&scores), (1.0, 1.0, true));
}

#[test]
fn random_byte_damage_to_a_notebook_never_panics() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const ALPHABET: &[u8] = b"{}[]\",:0123456789eE \\n\"tfnul";
    let source = fixtures::python();
    for _ in 0..3000 {
        let mut bytes = fixtures::PYTHON.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let at = usize::try_from(next() % bytes.len() as u64).unwrap_or(0);
            bytes[at] = ALPHABET[usize::try_from(next() % ALPHABET.len() as u64).unwrap_or(0)];
        }
        if let Ok(damaged) = Source::parse(&bytes) {
            let _ = damaged.release().to_bytes();
        }
        if let Ok(submission) = crate::Notebook::parse(&bytes) {
            let rebuilt = source.rebuild(&submission).notebook;
            let scores = score(&source, &fixtures::execute_clean(&rebuilt));
            assert_eq!(scores.len(), 5);
        }
    }
}
