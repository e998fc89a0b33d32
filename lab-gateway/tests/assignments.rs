//! Graded exercises end to end through the real HTTP API, graded by real
//! academy-candle kernels: a trainer imports an nbgrader source notebook
//! and releases it; engineers fetch, submit and read their feedback; the
//! gradebook; what other engineers cannot see; tampering that changes
//! nothing.

mod common;

use std::time::Duration;

use common::*;
use lab_gateway::store::Role;
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "HIDDEN-MARKER-7f3a";
const SOLUTION: &str = "6 * 7 /* the-solution */";

fn cell(kind: &str, source: &str, nbgrader: Option<Value>) -> Value {
    let mut metadata = json!({});
    if let Some(nb) = nbgrader {
        metadata["nbgrader"] = nb;
    }
    let mut c = json!({"cell_type": kind, "metadata": metadata, "source": source});
    if kind == "code" {
        c["outputs"] = json!([]);
        c["execution_count"] = Value::Null;
    }
    c
}

fn grade(id: &str, points: f64) -> Value {
    json!({"grade": true, "grade_id": id, "locked": true, "points": points,
           "schema_version": 3, "solution": false, "task": false})
}

/// An academy-candle source notebook in nbgrader's format: one answer,
/// a public test, a test with hidden tests, a partial-credit test.
fn source() -> Value {
    json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "academy-candle", "display_name": "Candle", "language": "rhai"}},
        "cells": [
            cell("markdown", "# Multiply\nSet `answer` to six times seven.", None),
            cell("code", &format!("// BEGIN SOLUTION\nlet answer = {SOLUTION};\n// END SOLUTION"),
                 Some(json!({"grade": false, "grade_id": "answer", "locked": false,
                             "schema_version": 3, "solution": true, "task": false}))),
            cell("code", "if answer != 42 { throw \"answer should be 42\"; }",
                 Some(grade("test_answer", 2.0))),
            cell("code", &format!("if answer < 0 {{ throw \"negative\"; }}\n// BEGIN HIDDEN TESTS\nif answer != 42 {{ throw \"{SECRET} wrong\"; }}\n// END HIDDEN TESTS"),
                 Some(grade("test_hidden", 3.0))),
            cell("code", "if answer == 42 { 3.5 } else { 0.0 }", Some(grade("test_partial", 4.0))),
        ]
    })
}

/// The released notebook with the answer cell's text set.
fn answered(released: &Value, text: &str) -> Value {
    let mut nb = released.clone();
    for c in nb["cells"].as_array_mut().unwrap() {
        if c["metadata"]["nbgrader"]["grade_id"] == "answer" {
            c["source"] = json!(text);
        }
    }
    nb
}

async fn graded(g: &Gateway, token: &str, id: &str) -> Value {
    graded_within(g, token, id, Duration::from_secs(120)).await
}

fn cell_of<'a>(sub: &'a Value, grade_id: &str) -> &'a Value {
    sub["feedback"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["grade_id"] == grade_id)
        .unwrap_or_else(|| panic!("no feedback for {grade_id}: {sub}"))
}

async fn submit(g: &Gateway, token: &str, nb: Value) -> String {
    let (status, sub) = g
        .post(
            "/api/courses/ml/assignments/hw1/submissions",
            token,
            json!({"notebook": nb}),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    sub["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_is_released_submitted_graded_and_explained_without_leaks() {
    let g = start_gateway().await;
    let trainer = g.user_in("tess", Role::Trainer, None);
    let ada = g.user("ada");
    let bob = g.user("bob");
    let path = "/api/courses/ml/assignments/hw1";
    let due = chrono::Utc::now() + chrono::Duration::hours(1);

    // An engineer cannot author; a bad source notebook is refused with why.
    let (status, _) = g
        .send(Method::PUT, path, &ada, json!({"notebook": source()}))
        .await;
    assert_eq!(status, 403);
    let mut broken = source();
    broken["cells"][3]["metadata"]["nbgrader"]["grade_id"] = json!("test_answer");
    let (status, body) = g
        .send(Method::PUT, path, &trainer, json!({"notebook": broken}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("test_answer"),
        "{body}"
    );

    let (status, a) = g
        .send(
            Method::PUT,
            path,
            &trainer,
            json!({"notebook": source(), "policy": {"dates": {"due": due}}}),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["max_score"], 9.0);
    assert_eq!(a["cells"].as_array().unwrap().len(), 3, "{a}");

    // A draft is the staff's alone.
    assert_eq!(g.get(path, &ada).await.0, 404);
    let (status, _) = g
        .send(Method::PATCH, path, &trainer, json!({"released": true}))
        .await;
    assert_eq!(status, 200);
    let (status, listed) = g.get("/api/assignments", &ada).await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["name"], "hw1", "{listed}");

    // The engineer's copy holds no solution and no hidden test.
    let (status, fetched) = g.post(&format!("{path}/fetch"), &ada, Value::Null).await;
    assert_eq!(status, 201, "{fetched}");
    let (status, copy) = g.get("/api/contents/ml/hw1.ipynb", &ada).await;
    assert_eq!(status, 200);
    let released = copy["content"].clone();
    let text = released.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains("the-solution"),
        "{text}"
    );
    assert_eq!(
        g.post(&format!("{path}/fetch"), &ada, Value::Null).await.0,
        409
    );

    // Validate (nbgrader's button): the public tests on the copy, nothing
    // recorded and nothing hidden sent.
    let (status, checked) = g
        .post(
            &format!("{path}/validate"),
            &ada,
            json!({"notebook": answered(&released, "let answer = 41;")}),
        )
        .await;
    assert_eq!(status, 200, "{checked}");
    let public = checked["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["grade_id"] == "test_answer")
        .unwrap();
    assert_eq!(public["points"], 0.0, "{checked}");
    assert!(
        public["output"]
            .as_str()
            .unwrap()
            .contains("answer should be 42"),
        "{checked}"
    );
    assert!(!checked.to_string().contains(SECRET), "{checked}");
    assert_eq!(
        g.get(&format!("{path}/submissions"), &ada).await.1,
        json!([])
    );

    // A wrong answer: the public test fails with its message, the hidden
    // result is withheld until the due date, partial credit is 0.
    let wrong = submit(&g, &ada, answered(&released, "let answer = 41;")).await;
    let sub = graded(&g, &ada, &wrong).await;
    assert_eq!(sub["state"], "graded", "{sub}");
    let public = cell_of(&sub, "test_answer");
    assert_eq!(public["points"], 0.0, "{sub}");
    assert!(
        public["output"]
            .as_str()
            .unwrap()
            .contains("answer should be 42"),
        "{sub}"
    );
    let hidden = cell_of(&sub, "test_hidden");
    assert_eq!(hidden["points"], Value::Null, "{sub}");
    assert_eq!(hidden["output"], "", "{sub}");
    assert_eq!(cell_of(&sub, "test_partial")["points"], 0.0, "{sub}");

    // Another engineer sees none of it.
    assert_eq!(
        g.get(&format!("/api/submissions/{wrong}"), &bob).await.0,
        404
    );
    assert_eq!(
        g.get(&format!("/api/submissions/{wrong}/notebook"), &bob)
            .await
            .0,
        404
    );
    assert_eq!(g.get(&format!("{path}/gradebook"), &bob).await.0, 404);
    let (_, bobs) = g.get(&format!("{path}/submissions"), &bob).await;
    assert_eq!(bobs, json!([]));

    // Tampering: every test cell deleted, a forged one in their place
    // claiming full marks, points raised in the metadata. Graded as the
    // honest wrong answer it is.
    let mut forged = answered(&released, "let answer = 41;");
    let cells = forged["cells"].as_array_mut().unwrap();
    cells.retain(|c| c["metadata"]["nbgrader"]["grade"] != true);
    cells.push(cell("code", "4.0", Some(grade("test_partial", 400.0))));
    cells.push(cell(
        "code",
        "1",
        Some(json!({"grade": true, "solution": true, "grade_id": "test_answer", "points": 2})),
    ));
    let tampered = submit(&g, &ada, forged).await;
    let sub = graded(&g, &ada, &tampered).await;
    assert_eq!(cell_of(&sub, "test_answer")["points"], 0.0, "{sub}");
    assert_eq!(cell_of(&sub, "test_partial")["points"], 0.0, "{sub}");
    assert_eq!(sub["feedback"]["max_score"], 9.0, "{sub}");

    // Fixed: full public marks and the partial credit.
    let right = submit(&g, &ada, answered(&released, "let answer = 42;")).await;
    let sub = graded(&g, &ada, &right).await;
    assert_eq!(cell_of(&sub, "test_answer")["points"], 2.0, "{sub}");
    assert_eq!(cell_of(&sub, "test_partial")["points"], 3.5, "{sub}");
    assert_eq!(cell_of(&sub, "test_hidden")["points"], Value::Null, "{sub}");

    // Staff see every grade, hidden ones included; the gradebook counts
    // the latest submission.
    let (status, book) = g.get(&format!("{path}/gradebook"), &trainer).await;
    assert_eq!(status, 200, "{book}");
    let row = &book["rows"][0];
    assert_eq!(row["user"], "ada");
    assert_eq!(row["submission"], right.as_str());
    assert_eq!(row["total"], 8.5, "{book}");
    assert_eq!(row["submissions"], 3);
    let csv = g
        .text(&format!("{path}/gradebook?format=csv"), &trainer)
        .await;
    assert!(
        csv.starts_with("user,test_answer,test_hidden,test_partial,score"),
        "{csv}"
    );
    assert!(csv.contains("ada,2,3,3.5,8.5,0,8.5,graded"), "{csv}");

    // The same from a script: `lab assignment submit --wait`, `export`.
    let nb_file = g.data.path().join("answer.ipynb");
    std::fs::write(
        &nb_file,
        answered(&released, "let answer = 42;").to_string(),
    )
    .unwrap();
    let lab = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lab"));
        cmd.args(args).env_remove("LAB_TOKEN").env_remove("LAB_URL");
        cmd.output()
    };
    let args = |token: &str, rest: &[&str]| -> Vec<String> {
        ["assignment"]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .chain([
                "--url".into(),
                g.base.clone(),
                "--token".into(),
                token.into(),
            ])
            .collect()
    };
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        lab(args(
            &ada,
            &["submit", "ml", "hw1", nb_file.to_str().unwrap(), "--wait"],
        )),
    )
    .await
    .unwrap()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("test_answer") && said.contains("hidden"),
        "{said}"
    );
    let out = lab(args(&trainer, &["export", "ml", "hw1"])).await.unwrap();
    let exported = String::from_utf8_lossy(&out.stdout);
    assert!(
        exported.contains("ada,2,3,3.5,8.5,0,8.5,graded"),
        "{exported}"
    );
    let out = lab(args(&ada, &["export", "ml", "hw1"])).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    // Published: the engineer sees the hidden result now.
    g.send(
        Method::PATCH,
        path,
        &trainer,
        json!({"published": true, "policy": {"dates": {"due": due}, "hidden": "when_published"}}),
    )
    .await;
    let sub = graded(&g, &ada, &right).await;
    assert_eq!(cell_of(&sub, "test_hidden")["points"], 3.0, "{sub}");

    // Nothing the engineer was ever sent holds the hidden test or the solution.
    let mut seen = String::new();
    for id in [&wrong, &tampered, &right] {
        seen += &g
            .get(&format!("/api/submissions/{id}"), &ada)
            .await
            .1
            .to_string();
    }
    seen += &g.get("/api/assignments", &ada).await.1.to_string();
    seen += &g.get(path, &ada).await.1.to_string();
    seen += &g
        .get(&format!("{path}/submissions"), &ada)
        .await
        .1
        .to_string();
    assert!(!seen.contains(SECRET), "{seen}");
    assert!(!seen.contains("the-solution"), "{seen}");
    // Nor does anything in the engineers' folders.
    for entry in walk(&g.data.path().join("users")) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// academy-rust: an answer that defines its own `assert_eq!` (a
/// `macro_rules!` that accepts anything) cannot pass the test after it:
/// the grader runs the source's tests with the standard macros by path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_answer_cannot_replace_the_tests_assert_macros() {
    let g = start_gateway().await;
    let trainer = g.user_in("tess", Role::Trainer, None);
    let ada = g.user("ada");
    let path = "/api/courses/rs/assignments/add";
    let source = json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "academy-rust", "display_name": "Rust", "language": "rust"}},
        "cells": [
            cell("code", "// BEGIN SOLUTION\nfn add(a: i64, b: i64) -> i64 { a + b }\n// END SOLUTION",
                 Some(json!({"grade": false, "grade_id": "add", "locked": false,
                             "schema_version": 3, "solution": true, "task": false}))),
            cell("code", "assert_eq!(add(2, 2), 4);", Some(grade("test_add", 1.0))),
        ]
    });
    let (status, body) = g
        .send(Method::PUT, path, &trainer, json!({"notebook": source}))
        .await;
    assert_eq!(status, 200, "{body}");
    g.send(Method::PATCH, path, &trainer, json!({"released": true}))
        .await;
    let (_, fetched) = g.post(&format!("{path}/fetch"), &ada, Value::Null).await;
    let (_, copy) = g
        .get(
            &format!("/api/contents/{}", fetched["path"].as_str().unwrap()),
            &ada,
        )
        .await;
    let mut nb = copy["content"].clone();
    nb["cells"][0]["source"] = json!(
        "fn add(a: i64, b: i64) -> i64 { a - b }\nmacro_rules! assert_eq { ($($t:tt)*) => {} }"
    );
    let (status, sub) = g
        .post(
            &format!("{path}/submissions"),
            &ada,
            json!({"notebook": nb}),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    let sub = graded(&g, &ada, sub["id"].as_str().unwrap()).await;
    assert_eq!(sub["state"], "graded", "{sub}");
    let test = cell_of(&sub, "test_add");
    assert_eq!(test["points"], 0.0, "{sub}");
    // The same test gives a right answer its point (the rewritten test
    // cell still compiles and runs: evcxr reads a first line starting with
    // `:` as a command, so the path is `std::`, not `::std::`).
    nb["cells"][0]["source"] = json!("fn add(a: i64, b: i64) -> i64 { a + b }");
    let (_, sub) = g
        .post(
            &format!("{path}/submissions"),
            &ada,
            json!({"notebook": nb}),
        )
        .await;
    let sub = graded(&g, &ada, sub["id"].as_str().unwrap()).await;
    assert_eq!(cell_of(&sub, "test_add")["points"], 1.0, "{sub}");
}
