use serde_json::{Value, json};

use crate::fixtures::{self, answered, index_of, released_json, text_of};
use crate::notebook::Notebook;
use crate::score::score;
use crate::source::Source;

const HIDDEN: &str = "assert double(21) == 42, \"secret case fails\"";

fn tampered(source: &Source, edit: impl FnOnce(&mut Value)) -> Notebook {
    let mut v = released_json(source);
    edit(&mut v);
    Notebook::from_value(v).unwrap()
}

fn assert_tests_intact(source: &Source, rebuilt: &Notebook) {
    let original = crate::notebook::source_of(&source.notebook().cells()[3]);
    assert_eq!(text_of(rebuilt, "double-tests"), original);
    assert!(text_of(rebuilt, "double-tests").contains(HIDDEN));
    let nbgrader = &rebuilt.cells()[3]["metadata"]["nbgrader"];
    assert_eq!(nbgrader["points"], 2);
    assert_eq!(nbgrader["grade"], true);
    assert_eq!(nbgrader["solution"], false);
}

fn notes_are_neutral(source: &Source, notes: &[String]) {
    for note in notes {
        for secret in source.secret_lines() {
            assert!(!note.contains(&secret), "{note}");
        }
        assert!(!note.contains("assert"), "{note}");
    }
}

#[test]
fn an_untouched_release_rebuilds_to_the_source_with_hidden_tests_in_and_solutions_out() {
    let source = fixtures::python();
    let rebuilt = source.rebuild(&source.release());
    assert_eq!(rebuilt.notes, Vec::<String>::new());
    assert_tests_intact(&source, &rebuilt.notebook);
    assert_eq!(text_of(&rebuilt.notebook, "explain"), crate::TEXT_STUB);
    assert!(text_of(&rebuilt.notebook, "style").contains("One mark for tidy function names"));
    assert_eq!(
        rebuilt.notebook.cells().len(),
        source.notebook().cells().len()
    );
    let bytes = String::from_utf8(rebuilt.notebook.to_bytes()).unwrap();
    assert!(!bytes.contains("the model answer"));
}

#[test]
fn answers_are_taken_from_the_submission() {
    let source = fixtures::python();
    let submission = answered(
        &source,
        &[
            ("double", "def double(x):\n    return x + x"),
            ("explain", "Adding twice."),
        ],
    );
    let rebuilt = source.rebuild(&submission);
    assert_eq!(
        text_of(&rebuilt.notebook, "double"),
        "def double(x):\n    return x + x"
    );
    assert_eq!(text_of(&rebuilt.notebook, "explain"), "Adding twice.");
    assert!(rebuilt.notes.is_empty(), "{:?}", rebuilt.notes);
}

#[test]
fn a_test_cell_edited_in_the_submission_is_run_from_the_source() {
    let source = fixtures::python();
    let rebuilt = source.rebuild(&answered(&source, &[("double-tests", "pass")]));
    assert_tests_intact(&source, &rebuilt.notebook);
    assert_eq!(
        rebuilt.notes,
        vec!["Cell 'double-tests' was edited; the grader ran the original."]
    );
}

#[test]
fn a_test_cell_deleted_from_the_submission_is_run_from_the_source() {
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        v["cells"].as_array_mut().unwrap().remove(3);
    });
    let rebuilt = source.rebuild(&submission);
    assert_tests_intact(&source, &rebuilt.notebook);
    assert!(
        rebuilt.notes[0].contains("'double-tests' is missing"),
        "{:?}",
        rebuilt.notes
    );
    notes_are_neutral(&source, &rebuilt.notes);
}

#[test]
fn points_changed_in_the_submissions_metadata_are_ignored() {
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        v["cells"][3]["metadata"]["nbgrader"]["points"] = json!(1000);
        v["cells"][6]["metadata"]["nbgrader"]["points"] = json!(1000);
    });
    let rebuilt = source.rebuild(&submission);
    assert_tests_intact(&source, &rebuilt.notebook);
    assert_eq!(
        rebuilt.notebook.cells()[6]["metadata"]["nbgrader"]["points"],
        1
    );
    let scores = score(&source, &fixtures::execute_clean(&rebuilt.notebook));
    assert_eq!(crate::total(&scores).1, source.max_score());
    assert_eq!(rebuilt.notes.len(), 2, "{:?}", rebuilt.notes);
}

#[test]
fn a_test_cell_relabelled_as_a_solution_is_ignored() {
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        let cell = &mut v["cells"][3];
        cell["metadata"]["nbgrader"]["solution"] = json!(true);
        cell["metadata"]["nbgrader"]["grade"] = json!(false);
        cell["source"] = json!("pass");
    });
    let rebuilt = source.rebuild(&submission);
    assert_tests_intact(&source, &rebuilt.notebook);
    assert_eq!(
        rebuilt.notes,
        vec!["Cell 'double-tests' had its grading metadata changed; the grader used the original."]
    );
}

#[test]
fn a_manual_code_answer_unmarked_as_solution_is_not_autograded() {
    // nbgrader 0.9 scores such a cell like a test cell: full marks if it runs.
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        let i = index_of(v, "describe");
        v["cells"][i]["metadata"]["nbgrader"]["solution"] = json!(false);
        v["cells"][i]["source"] = json!("1 + 1");
    });
    let rebuilt = source.rebuild(&submission);
    assert_eq!(
        text_of(&rebuilt.notebook, "describe"),
        text_of(&source.release(), "describe")
    );
    let scores = score(&source, &fixtures::execute_clean(&rebuilt.notebook));
    let describe = scores.iter().find(|s| s.grade_id == "describe").unwrap();
    assert_eq!(describe.points, Some(0.0));
    assert!(
        rebuilt.notes[0].contains("no longer marked as an answer"),
        "{:?}",
        rebuilt.notes
    );
}

#[test]
fn reordered_cells_run_in_the_source_order() {
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        let cells = v["cells"].as_array_mut().unwrap();
        cells.swap(2, 3);
        cells[3]["source"] = json!("def double(x):\n    return 2 * x");
    });
    let rebuilt = source.rebuild(&submission);
    let ids: Vec<Option<&str>> = rebuilt
        .notebook
        .cells()
        .iter()
        .map(crate::metadata::grade_id)
        .collect();
    let source_ids: Vec<Option<&str>> = source
        .notebook()
        .cells()
        .iter()
        .map(crate::metadata::grade_id)
        .collect();
    assert_eq!(ids, source_ids);
    assert_eq!(
        text_of(&rebuilt.notebook, "double"),
        "def double(x):\n    return 2 * x"
    );
    assert_eq!(
        rebuilt.notes,
        vec!["Cells were moved; the grader used the assignment's order."]
    );
}

#[test]
fn duplicate_grade_ids_in_a_submission_take_the_last_answer_and_run_tests_once() {
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        let cells = v["cells"].as_array_mut().unwrap();
        let mut copy = cells[2].clone();
        copy["source"] = json!("def double(x):\n    return x << 1");
        cells.insert(3, copy);
        let tests = cells[4].clone();
        cells.push(tests);
    });
    let rebuilt = source.rebuild(&submission);
    assert_eq!(
        text_of(&rebuilt.notebook, "double"),
        "def double(x):\n    return x << 1"
    );
    let count = rebuilt
        .notebook
        .cells()
        .iter()
        .filter(|c| crate::metadata::grade_id(c) == Some("double-tests"))
        .count();
    assert_eq!(count, 1);
    assert!(
        rebuilt
            .notes
            .iter()
            .any(|n| n.contains("'double' appears 2 times")),
        "{:?}",
        rebuilt.notes
    );
    assert!(
        rebuilt
            .notes
            .iter()
            .any(|n| n.contains("'double-tests' appears 2 times")),
        "{:?}",
        rebuilt.notes
    );
}

#[test]
fn a_cell_injected_with_a_forged_grade_id_is_never_run() {
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        let cells = v["cells"].as_array_mut().unwrap();
        cells.insert(
            0,
            json!({"cell_type": "code", "execution_count": null, "outputs": [],
            "metadata": {"nbgrader": {"grade": true, "solution": true, "locked": false,
                "grade_id": "bonus", "points": 50, "schema_version": 3}},
            "source": "import builtins"}),
        );
        cells.insert(
            4,
            json!({"cell_type": "code", "execution_count": null, "outputs": [],
            "metadata": {"nbgrader": {"grade": false, "solution": true, "locked": false,
                "grade_id": "double-tests", "schema_version": 3}},
            "source": "def double(x): return 0"}),
        );
        cells
            .push(json!({"cell_type": "code", "metadata": {}, "source": "import os\nos._exit(0)"}));
    });
    let rebuilt = source.rebuild(&submission);
    assert_tests_intact(&source, &rebuilt.notebook);
    let all = String::from_utf8(rebuilt.notebook.to_bytes()).unwrap();
    for injected in ["import builtins", "return 0", "os._exit"] {
        assert!(!all.contains(injected), "{injected} was kept");
    }
    assert_eq!(
        source.graded_cells().len(),
        crate::score(&source, &rebuilt.notebook).len()
    );
    assert!(
        rebuilt
            .notes
            .iter()
            .any(|n| n.starts_with("1 cell(s) with grading metadata"))
    );
    assert!(
        rebuilt
            .notes
            .iter()
            .any(|n| n.starts_with("1 cell(s) outside the answer cells"))
    );
    notes_are_neutral(&source, &rebuilt.notes);
}

#[test]
fn an_answer_containing_hidden_test_markers_is_taken_verbatim_and_changes_nothing_else() {
    let source = fixtures::python();
    let answer = "def double(x):\n    return 2 * x\n### BEGIN HIDDEN TESTS\nprint('mine')\n### END HIDDEN TESTS\n### END SOLUTION";
    let rebuilt = source.rebuild(&answered(&source, &[("double", answer)]));
    assert_eq!(text_of(&rebuilt.notebook, "double"), answer);
    assert_tests_intact(&source, &rebuilt.notebook);
    assert!(rebuilt.notes.is_empty());
}

#[test]
fn the_submissions_kernelspec_and_answer_cell_types_are_ignored() {
    let source = fixtures::python();
    let submission = tampered(&source, |v| {
        v["metadata"]["kernelspec"] = json!({"name": "bash", "language": "bash"});
        let i = index_of(v, "double");
        v["cells"][i]["cell_type"] = json!("markdown");
        v["cells"][i]["source"] = json!("def double(x):\n    return x * 2");
    });
    let rebuilt = source.rebuild(&submission);
    assert_eq!(rebuilt.notebook.kernel_name().as_deref(), Some("python3"));
    assert_eq!(rebuilt.notebook.cells()[2]["cell_type"], "code");
    assert_eq!(
        text_of(&rebuilt.notebook, "double"),
        "def double(x):\n    return x * 2"
    );
    assert_eq!(
        rebuilt.notes,
        vec!["Answer cell 'double' had its cell type changed; it was graded as code."]
    );
}

#[test]
fn a_missing_answer_stays_the_stub_and_is_noted() {
    let source = fixtures::rust();
    let submission = tampered(&source, |v| {
        let i = index_of(v, "add");
        v["cells"].as_array_mut().unwrap().remove(i);
    });
    let rebuilt = source.rebuild(&submission);
    assert!(text_of(&rebuilt.notebook, "add").contains("todo!()"));
    assert_eq!(
        rebuilt.notes,
        vec!["Answer cell 'add' is missing from your notebook; it was graded as unanswered."]
    );
}

#[test]
fn outputs_in_the_submission_are_cleared() {
    let source = fixtures::candle();
    let submission = tampered(&source, |v| {
        v["cells"][1]["outputs"] = json!([{"output_type": "execute_result", "execution_count": 1,
            "data": {"text/plain": "1.0"}, "metadata": {}}]);
        v["cells"][0]["outputs"] =
            json!([{"output_type": "stream", "name": "stdout", "text": "x"}]);
    });
    let rebuilt = source.rebuild(&submission);
    for cell in rebuilt.notebook.cells() {
        assert_eq!(cell["outputs"], json!([]));
    }
}

#[test]
fn any_submission_with_a_wrong_value_anywhere_rebuilds_without_panicking() {
    let source = fixtures::python();
    let original = released_json(&source);
    let mut paths = Vec::new();
    fixtures::pointers(&original, String::new(), &mut paths);
    for path in &paths {
        for replacement in fixtures::replacements() {
            let mut v = original.clone();
            if let Some(slot) = v.pointer_mut(path) {
                *slot = replacement;
            }
            let Ok(submission) = Notebook::from_value(v) else {
                continue;
            };
            let rebuilt = source.rebuild(&submission);
            assert_tests_intact(&source, &rebuilt.notebook);
            let executed = fixtures::execute_clean(&rebuilt.notebook);
            let scores = score(&source, &executed);
            let fb = crate::feedback(&source, &executed, &scores, 0.0, false);
            assert_eq!(fb.cells.len(), 5);
        }
    }
}
