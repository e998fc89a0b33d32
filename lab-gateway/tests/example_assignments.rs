//! The example assignments in `examples/assignments/`, graded end to end
//! through the real HTTP API by real kernels: each source notebook is
//! imported and released by a trainer, the released copy an engineer
//! fetches holds no solution and no hidden test, both sample submissions
//! are that release with the answers filled in, and each scores, cell by
//! cell, what the example's README table says.
//!
//! The README is the one place the expected scores are written: this test
//! reads its table (rows `| `grade_id` | points | correct | incorrect | ... |`
//! and a `| **total** | ... |` row), so the two cannot drift apart.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use lab_gateway::store::Role;
use reqwest::Method;
use serde_json::{Value, json};

const COURSE: &str = "examples";

/// How long one submission may take to be graded: academy-rust compiles
/// every cell, and the first kernel of a fresh gateway starts slowly.
const GRADING_LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_basics_scores_what_its_readme_says() {
    check_example("rust-basics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensors_and_broadcasting_scores_what_its_readme_says() {
    check_example("tensors-and-broadcasting").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlp_hidden_threshold_scores_what_its_readme_says() {
    check_example("mlp-hidden-threshold").await;
}

fn example_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/assignments")
        .join(name)
}

fn read_json(path: &std::path::Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a README's table says one graded cell scores.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    grade_id: String,
    points: f64,
    correct: f64,
    incorrect: f64,
}

/// The table's rows and its total row.
fn readme_table(name: &str) -> (Vec<Row>, Row) {
    let path = example_dir(name).join("README.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut total = None;
    for line in text.lines() {
        let cols: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cols.len() < 4 {
            continue;
        }
        let number = |s: &str| -> f64 {
            s.trim_matches('*')
                .parse()
                .unwrap_or_else(|_| panic!("{}: not a number {s:?} in {line:?}", path.display()))
        };
        let label = cols[0];
        let grade_id = if label == "**total**" {
            "total".to_owned()
        } else if let Some(rest) = label.strip_prefix('`') {
            rest.split('`').next().unwrap_or_default().to_owned()
        } else {
            continue;
        };
        let row = Row {
            grade_id,
            points: number(cols[1]),
            correct: number(cols[2]),
            incorrect: number(cols[3]),
        };
        if row.grade_id == "total" {
            total = Some(row);
        } else {
            rows.push(row);
        }
    }
    let total = total.unwrap_or_else(|| panic!("{}: no **total** row", path.display()));
    assert!(!rows.is_empty(), "{}: no score table", path.display());
    (rows, total)
}

fn text_of(cell: &Value) -> String {
    match &cell["source"] {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn nbgrader<'a>(cell: &'a Value, key: &str) -> &'a Value {
    &cell["metadata"]["nbgrader"][key]
}

fn is_solution(cell: &Value) -> bool {
    nbgrader(cell, "solution") == true
}

/// The lines of the source's solution and hidden-test regions that must
/// never reach an engineer: long enough to be telling, and not also
/// written outside a region.
fn secret_lines(source: &Value) -> Vec<String> {
    let mut inside = Vec::new();
    let mut outside = std::collections::HashSet::new();
    for cell in source["cells"].as_array().unwrap() {
        let mut open = false;
        for line in text_of(cell).lines() {
            if line.contains("BEGIN SOLUTION") || line.contains("BEGIN HIDDEN TESTS") {
                open = true;
            } else if line.contains("END SOLUTION") || line.contains("END HIDDEN TESTS") {
                open = false;
            } else if open {
                inside.push(line.trim().to_owned());
            } else {
                outside.insert(line.trim().to_owned());
            }
        }
    }
    inside.retain(|l| l.chars().count() >= 8 && !outside.contains(l));
    assert!(
        !inside.is_empty(),
        "the source has no solution or hidden test"
    );
    inside
}

/// Every code cell's outputs in the notebook the grader ran, for a
/// failure message.
fn graded_outputs(g: &Gateway, sub: &Value) -> String {
    let Some(grading) = sub["gradings"].as_array().and_then(|a| a.last()) else {
        return "(no grading)".into();
    };
    let path = g
        .data
        .path()
        .join(format!("classroom/graded/{}.ipynb", grading["id"]));
    let Ok(bytes) = std::fs::read(&path) else {
        return format!("({} is missing)", path.display());
    };
    let nb: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut out = String::new();
    for cell in nb["cells"].as_array().into_iter().flatten() {
        if cell["cell_type"] != "code" {
            continue;
        }
        out += &format!(
            "\n--- {} (execution count {}):\n{}",
            nbgrader(cell, "grade_id"),
            cell["execution_count"],
            serde_json::to_string_pretty(&cell["outputs"]).unwrap_or_default()
        );
    }
    out
}

async fn graded(g: &Gateway, token: &str, id: &str) -> Value {
    graded_within(g, token, id, GRADING_LIMIT).await
}

async fn check_example(name: &str) {
    let started = Instant::now();
    let dir = example_dir(name);
    let source = read_json(&dir.join("source.ipynb"));
    let (rows, total) = readme_table(name);
    let secrets = secret_lines(&source);

    let g = start_gateway().await;
    let trainer = g.user_in("tess", Role::Trainer, None);
    let engineer = g.user("ada");
    let path = format!("/api/courses/{COURSE}/assignments/{name}");

    // Imported as it is, with the default policy, and released.
    let (status, a) = g
        .send(Method::PUT, &path, &trainer, json!({"notebook": source}))
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["max_score"], total.points, "{a}");
    assert_eq!(a["policy"]["cell_timeout_s"], 30, "{a}");
    let cells: Vec<&str> = a["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["grade_id"].as_str().unwrap())
        .collect();
    let table: Vec<&str> = rows.iter().map(|r| r.grade_id.as_str()).collect();
    assert_eq!(
        cells, table,
        "the README's table lists every graded cell, in order"
    );
    for (cell, row) in a["cells"].as_array().unwrap().iter().zip(&rows) {
        assert_eq!(cell["points"], row.points, "{name}: {}", row.grade_id);
    }
    assert_eq!(rows.iter().map(|r| r.points).sum::<f64>(), total.points);
    let (status, body) = g
        .send(Method::PATCH, &path, &trainer, json!({"released": true}))
        .await;
    assert_eq!(status, 200, "{body}");

    // The engineer's copy: no solution, no hidden test.
    let (status, body) = g
        .post(&format!("{path}/fetch"), &engineer, Value::Null)
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, copy) = g
        .get(&format!("/api/contents/{COURSE}/{name}.ipynb"), &engineer)
        .await;
    assert_eq!(status, 200, "{copy}");
    let release = copy["content"].clone();
    let released_text: String = release["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| text_of(c) + "\n")
        .collect();
    for marker in [
        "BEGIN SOLUTION",
        "END SOLUTION",
        "BEGIN HIDDEN TESTS",
        "END HIDDEN TESTS",
    ] {
        assert!(
            !released_text.contains(marker),
            "{name}: the release holds {marker:?}"
        );
    }
    for secret in &secrets {
        assert!(
            !released_text.contains(secret.as_str()),
            "{name}: the release holds {secret:?}"
        );
    }

    // Both samples are that release with only the answer cells changed.
    let mut submissions = Vec::new();
    for kind in ["correct", "incorrect"] {
        let nb = read_json(&dir.join(format!("submissions/{kind}.ipynb")));
        let theirs = nb["cells"].as_array().unwrap();
        let ours = release["cells"].as_array().unwrap();
        assert_eq!(
            theirs.len(),
            ours.len(),
            "{name}/{kind}: the release's cells"
        );
        for (i, (t, r)) in theirs.iter().zip(ours).enumerate() {
            assert_eq!(t["cell_type"], r["cell_type"], "{name}/{kind}: cell {i}");
            assert_eq!(t["metadata"], r["metadata"], "{name}/{kind}: cell {i}");
            if !is_solution(r) {
                assert_eq!(
                    text_of(t),
                    text_of(r),
                    "{name}/{kind}: cell {i} is not an answer"
                );
            }
        }
        assert_eq!(
            nb["metadata"]["kernelspec"],
            release["metadata"]["kernelspec"]
        );
        let (status, sub) = g
            .post(
                &format!("{path}/submissions"),
                &engineer,
                json!({"notebook": nb}),
            )
            .await;
        assert_eq!(status, 201, "{sub}");
        submissions.push((kind, sub["id"].as_str().unwrap().to_owned()));
    }

    // Each scores what the README says, cell by cell (as staff: hidden
    // results included).
    for (kind, id) in &submissions {
        let sub = graded(&g, &trainer, id).await;
        assert_eq!(sub["state"], "graded", "{name}/{kind}: {sub}");
        let feedback = sub["feedback"]["cells"].as_array().unwrap();
        let got: Vec<(String, f64)> = feedback
            .iter()
            .map(|c| {
                let points = c["points"].as_f64().unwrap_or(f64::NAN);
                (c["grade_id"].as_str().unwrap().to_owned(), points)
            })
            .collect();
        let want: Vec<(String, f64)> = rows
            .iter()
            .map(|r| {
                let points = if *kind == "correct" {
                    r.correct
                } else {
                    r.incorrect
                };
                (r.grade_id.clone(), points)
            })
            .collect();
        let want_total = if *kind == "correct" {
            total.correct
        } else {
            total.incorrect
        };
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-9);
        assert!(
            same && sub["score"].as_f64() == Some(want_total),
            "{name}/{kind}: got {got:?} (total {}), the README says {want:?} (total {want_total}).\n\
             What the grader ran printed:{}",
            sub["score"],
            graded_outputs(&g, &sub)
        );

        // What the engineer is sent holds no solution and no hidden test.
        let (status, mine) = g.get(&format!("/api/submissions/{id}"), &engineer).await;
        assert_eq!(status, 200, "{mine}");
        let mine = mine.to_string();
        for secret in &secrets {
            let escaped = serde_json::to_string(secret).unwrap();
            let escaped = &escaped[1..escaped.len() - 1];
            assert!(
                !mine.contains(escaped),
                "{name}/{kind}: the engineer's view holds {secret:?}"
            );
        }
    }
    eprintln!("{name}: graded both samples in {:.1?}", started.elapsed());
}
