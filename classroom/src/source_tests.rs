use serde_json::{Value, json};

use super::*;
use crate::fixtures::{
    self, NBGRADER_RELEASE, NBGRADER_SOURCE, PYTHON, RUST, source_with, text_of,
};

fn kinds(source: &Source) -> Vec<(&str, GradedKind, f64, bool)> {
    source
        .graded_cells()
        .iter()
        .map(|g| (g.grade_id.as_str(), g.kind, g.max_points, g.hidden))
        .collect()
}

#[test]
fn the_python_fixture_lists_its_graded_cells_in_notebook_order() {
    let source = fixtures::python();
    assert_eq!(source.language(), Language::Python);
    assert_eq!(
        kinds(&source),
        vec![
            ("double-tests", GradedKind::Tests, 2.0, true),
            ("double-partial", GradedKind::Tests, 3.0, false),
            ("explain", GradedKind::Manual, 1.0, false),
            ("describe", GradedKind::Manual, 2.0, false),
            ("style", GradedKind::Task, 2.0, false),
        ]
    );
    assert_eq!(source.graded_cells()[0].index, 3);
    assert_eq!(source.max_score(), 10.0);
}

#[test]
fn our_release_of_nbgraders_example_is_the_release_nbgrader_generated() {
    let ours = Source::parse(NBGRADER_SOURCE).unwrap().release();
    let theirs = Notebook::parse(NBGRADER_RELEASE).unwrap();
    // nbgrader's IncludeHeaderFooter added three header cells.
    let theirs_cells = &theirs.cells()[3..];
    assert_eq!(ours.cells().len(), theirs_cells.len());
    for (i, (a, b)) in ours.cells().iter().zip(theirs_cells).enumerate() {
        assert_eq!(a, b, "cell {i}");
    }
    assert_eq!(ours.to_value()["metadata"], theirs.to_value()["metadata"]);
}

#[test]
fn the_release_holds_no_solution_hidden_test_or_mark_scheme_text() {
    for source in [fixtures::python(), fixtures::rust(), fixtures::candle()] {
        let released = String::from_utf8(source.release().to_bytes()).unwrap();
        let secrets = source.secret_lines();
        assert!(!secrets.is_empty());
        for secret in &secrets {
            let escaped = serde_json::to_string(secret).unwrap();
            let escaped = escaped.trim_matches('"');
            assert!(!released.contains(escaped), "{secret:?} leaked");
        }
        for marker in crate::markers::ALL {
            assert!(!released.contains(marker), "{marker} leaked");
        }
    }
}

#[test]
fn solution_regions_become_the_languages_stub_indented_like_the_marker() {
    let py = fixtures::python().release();
    assert_eq!(
        text_of(&py, "double"),
        "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    );
    let rs = fixtures::rust().release();
    assert_eq!(
        text_of(&rs, "add"),
        "fn add(a: i64, b: i64) -> i64 {\n    // YOUR CODE HERE\n    todo!()\n}"
    );
    let rhai = fixtures::candle().release();
    assert_eq!(
        text_of(&rhai, "relu"),
        "fn relu(x) {\n    // YOUR CODE HERE\n    throw \"not implemented\";\n}"
    );
    assert_eq!(
        text_of(&rhai, "relu-tests"),
        "if relu(-1.0) != 0.0 { throw \"relu(-1) should be 0\"; }"
    );
}

#[test]
fn a_solution_cell_without_markers_is_replaced_wholly_by_the_stub() {
    let py = fixtures::python().release();
    assert_eq!(text_of(&py, "explain"), TEXT_STUB);
    let source = source_with(RUST, |v| {
        v["cells"][1]["source"] = json!("fn add(a: i64, b: i64) -> i64 { a + b }");
    })
    .unwrap();
    assert_eq!(
        text_of(&source.release(), "add"),
        Language::Rust.code_stub()
    );
}

#[test]
fn the_release_locks_cells_adds_checksums_and_clears_outputs() {
    let source = source_with(PYTHON, |v| {
        let cell = &mut v["cells"][3];
        cell["outputs"] = json!([{"output_type": "stream", "name": "stdout", "text": "hi"}]);
        cell["execution_count"] = json!(4);
        cell["metadata"]["collapsed"] = json!(true);
        v["metadata"]["celltoolbar"] = json!("Create Assignment");
    })
    .unwrap();
    let released = source.release();
    let tests = &released.cells()[3];
    assert_eq!(tests["outputs"], json!([]));
    assert_eq!(tests["execution_count"], Value::Null);
    assert_eq!(tests["metadata"]["deletable"], false);
    assert_eq!(tests["metadata"]["editable"], false);
    assert!(tests["metadata"].get("collapsed").is_none());
    assert_eq!(tests["metadata"]["nbgrader"]["cell_type"], "code");
    assert_eq!(
        tests["metadata"]["nbgrader"]["checksum"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    let answer = &released.cells()[2];
    assert_eq!(answer["metadata"]["deletable"], false);
    assert!(answer["metadata"].get("editable").is_none());
    assert!(released.to_value()["metadata"].get("celltoolbar").is_none());
    assert!(released.cells()[0]["metadata"].get("deletable").is_none());
}

#[test]
fn duplicate_grade_ids_are_refused_naming_both_cells() {
    let err = source_with(PYTHON, |v| {
        v["cells"][4]["metadata"]["nbgrader"]["grade_id"] = json!("double-tests");
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cell 5 (grade_id \"double-tests\")"),
        "{text}"
    );
    assert!(text.contains("cell 4"), "{text}");
}

#[test]
fn misplaced_regions_are_refused() {
    let cases: [(usize, &str, &str); 5] = [
        (
            4,
            "x = 1\n### BEGIN SOLUTION\ny\n### END SOLUTION",
            "not a solution cell",
        ),
        (
            1,
            "### BEGIN HIDDEN TESTS\nassert x\n### END HIDDEN TESTS",
            "not a grade",
        ),
        (
            7,
            "def describe():\n### BEGIN HIDDEN TESTS\nassert x\n### END HIDDEN TESTS",
            "never run",
        ),
        (
            3,
            "=== BEGIN MARK SCHEME ===\nx\n=== END MARK SCHEME ===",
            "not a task cell",
        ),
        (3, "### AUTOTEST double(3)", "AUTOTEST"),
    ];
    for (index, text, expected) in cases {
        let err = source_with(PYTHON, |v| v["cells"][index]["source"] = json!(text)).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    let early = source_with(PYTHON, |v| {
        v["cells"][2]["source"] =
            json!("### BEGIN SOLUTION\nprint('END SOLUTION')\nsecret = 1\n### END SOLUTION");
    })
    .unwrap_err();
    assert!(early.to_string().contains("line 4"), "{early}");
}

#[test]
fn secret_lines_are_the_non_trivial_hidden_lines_not_shown_in_the_release() {
    let secrets = fixtures::python().secret_lines();
    for expected in [
        "return x * 2  # the model answer",
        "assert double(21) == 42, \"secret case fails\"",
        "return 'a private model description'",
        "Multiplying by two adds the number to itself once.",
        "One mark for tidy function names",
    ] {
        assert!(
            secrets.iter().any(|s| s == expected),
            "{expected:?} in {secrets:?}"
        );
    }
    assert!(
        secrets
            .iter()
            .all(|s| s.chars().count() >= MIN_SECRET_CHARS)
    );
    assert!(secrets.iter().all(|s| !s.contains("BEGIN")));
    // A solution line the release shows anyway (here, in a test) is public.
    let source = source_with(PYTHON, |v| {
        v["cells"][2]["source"] = json!("def double(x):\n    ### BEGIN SOLUTION\n    assert double(1) == 2\n    ### END SOLUTION");
    })
    .unwrap();
    assert!(
        !source
            .secret_lines()
            .iter()
            .any(|s| s == "assert double(1) == 2")
    );
}

#[test]
fn a_notebook_for_a_kernel_we_do_not_run_is_refused() {
    let err = source_with(PYTHON, |v| {
        v["metadata"] = json!({"kernelspec": {"name": "ir", "language": "R"}});
    })
    .unwrap_err();
    assert!(
        matches!(err, crate::FormatError::UnknownLanguage { .. }),
        "{err}"
    );
}

#[test]
fn any_source_with_a_wrong_value_anywhere_is_refused_or_works_without_panicking() {
    let original: Value = serde_json::from_slice(PYTHON).unwrap();
    let mut paths = Vec::new();
    fixtures::pointers(&original, String::new(), &mut paths);
    for path in &paths {
        for replacement in fixtures::replacements() {
            let mut v = original.clone();
            if let Some(slot) = v.pointer_mut(path) {
                *slot = replacement;
            }
            let Ok(nb) = Notebook::from_value(v) else {
                continue;
            };
            if let Ok(source) = Source::from_notebook(nb) {
                let released = source.release();
                let rebuilt = source.rebuild(&released);
                let executed = fixtures::execute_clean(&rebuilt.notebook);
                let scores = crate::score(&source, &executed);
                let _ = crate::feedback(&source, &executed, &scores, 0.0, true);
            }
        }
    }
}
