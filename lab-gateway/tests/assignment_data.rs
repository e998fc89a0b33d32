//! An assignment's data files end to end, through the real HTTP API and
//! real academy-candle kernels: a trainer uploads a released file and a
//! hidden one; engineers get the released one beside their copy and read
//! it from their notebook's kernel; Validate has only the released file; a
//! grading has both; no engineer ever gets the hidden one.

mod common;

use std::time::Duration;

use common::*;
use lab_gateway::store::Role;
use reqwest::Method;
use serde_json::{Value, json};

const TRAIN: &str = "x,y\n1,2\n3,4\n5,6\n";
const LABELS: &str = "label\n7\n8\n";
const PATH: &str = "/api/courses/ml/assignments/hw1";

fn cell(kind: &str, source: &str, nbgrader: Value) -> Value {
    let mut c = json!({"cell_type": kind, "metadata": {"nbgrader": nbgrader}, "source": source});
    if kind == "code" {
        c["outputs"] = json!([]);
        c["execution_count"] = Value::Null;
    }
    c
}

fn test_cell(id: &str, points: f64) -> Value {
    json!({"grade": true, "grade_id": id, "locked": true, "points": points,
           "schema_version": 3, "solution": false, "task": false})
}

/// The answer reads the released file by a path relative to the notebook;
/// one public test needs the hidden file, which only a grading has.
fn source() -> Value {
    json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "academy-candle", "display_name": "Candle", "language": "rhai"}},
        "cells": [
            cell("code", "// BEGIN SOLUTION\nlet rows = read_csv(\"data/train.csv\").data.dim(0);\n// END SOLUTION",
                 json!({"grade": false, "grade_id": "answer", "locked": false,
                        "schema_version": 3, "solution": true, "task": false})),
            cell("code", "if rows != 3 { throw \"expected 3 rows\"; }", test_cell("test_rows", 1.0)),
            cell("code", "let labels = read_csv(\"labels.csv\");\nif labels.data.dim(0) != 2 { throw \"expected 2 labels\"; }",
                 test_cell("test_labels", 2.0)),
        ]
    })
}

async fn put_file(g: &Gateway, token: &str, path: &str, body: &str) -> (u16, Value) {
    let r = g
        .raw(
            Method::PUT,
            &format!("{PATH}/files/{path}"),
            token,
            Some(("application/octet-stream", body)),
        )
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn points(feedback: &Value, grade_id: &str) -> f64 {
    feedback["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["grade_id"] == grade_id)
        .unwrap_or_else(|| panic!("no {grade_id}: {feedback}"))["points"]
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_files_reach_engineers_and_every_run_hidden_files_only_gradings() {
    let g = start_gateway().await;
    let tess = g.user_in("tess", Role::Trainer, None);
    let ada = g.user("ada");
    let (status, a) = g
        .send(Method::PUT, PATH, &tess, json!({"notebook": source()}))
        .await;
    assert_eq!(status, 200, "{a}");

    // Staff upload; the path is where the file lands beside the notebook.
    assert_eq!(put_file(&g, &tess, "data/train.csv", "old").await.0, 201);
    let (status, put) = put_file(&g, &tess, "data/train.csv", TRAIN).await;
    assert_eq!((status, &put["size"]), (200, &json!(TRAIN.len())), "{put}");
    let (status, put) = put_file(&g, &tess, "labels.csv?hidden=true", LABELS).await;
    assert_eq!((status, &put["hidden"]), (201, &json!(true)), "{put}");
    // Paths that would hide, escape, replace a notebook or clash are refused.
    for bad in [
        ".env",
        "x.ipynb",
        "data",
        "data/train.csv/x",
        "a%2F..%2F..%2Fb",
    ] {
        let (status, why) = put_file(&g, &tess, bad, "x").await;
        assert_eq!(status, 400, "{bad}: {why}");
        assert!(why["message"].as_str().is_some(), "{why}");
    }
    // An engineer cannot upload, nor see anything of a draft.
    assert_eq!(put_file(&g, &ada, "evil.csv", "x").await.0, 404);
    assert_eq!(g.get(&format!("{PATH}/files"), &ada).await.0, 404);

    let (status, _) = g
        .send(Method::PATCH, PATH, &tess, json!({"released": true}))
        .await;
    assert_eq!(status, 200);

    // Staff see both sides; an engineer only the released file.
    let (_, staff_list) = g.get(&format!("{PATH}/files"), &tess).await;
    assert_eq!(
        staff_list,
        json!([{"path": "data/train.csv", "hidden": false, "size": TRAIN.len()},
               {"path": "labels.csv", "hidden": true, "size": LABELS.len()}])
    );
    let (status, listed) = g.get(&format!("{PATH}/files"), &ada).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed,
        json!([{"path": "data/train.csv", "size": TRAIN.len()}])
    );
    assert_eq!(g.get(PATH, &ada).await.1["files"], listed);
    assert_eq!(
        g.text(&format!("{PATH}/files/data/train.csv"), &ada).await,
        TRAIN
    );
    assert_eq!(
        g.get(&format!("{PATH}/files/labels.csv"), &ada).await.0,
        404
    );
    assert_eq!(
        g.text(&format!("{PATH}/files/labels.csv"), &tess).await,
        LABELS
    );

    // Fetching puts the released file beside the copy, and nothing hidden.
    let (status, fetched) = g.post(&format!("{PATH}/fetch"), &ada, Value::Null).await;
    assert_eq!(status, 201, "{fetched}");
    assert_eq!(fetched["files"], json!(["ml/data/train.csv"]), "{fetched}");
    let (status, file) = g.get("/api/contents/ml/data/train.csv", &ada).await;
    assert_eq!((status, &file["content"]), (200, &json!(TRAIN)), "{file}");
    assert_eq!(g.get("/api/contents/ml/labels.csv", &ada).await.0, 404);
    let (_, copy) = g.get("/api/contents/ml/hw1.ipynb", &ada).await;
    let released = copy["content"].clone();

    // The notebook's kernel starts in the notebook's folder, as Jupyter's
    // does, so the path the trainer wrote works there as in a grading.
    let (status, session) = g
        .post(
            "/api/sessions",
            &ada,
            json!({"path": "ml/hw1.ipynb", "type": "notebook", "kernel": {"name": "academy-candle"}}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let kernel = session["kernel"]["id"].as_str().unwrap().to_owned();
    let mut ws = connect(&g, &kernel, &ada).await;
    let (reply, _, result) = run_cell(&mut ws, "read_csv(\"data/train.csv\").data.dim(0)").await;
    assert_eq!(
        (reply["status"].as_str(), result.as_str()),
        (Some("ok"), "3"),
        "{reply}"
    );
    let (reply, _, _) = run_cell(&mut ws, "read_csv(\"labels.csv\")").await;
    assert_eq!(reply["status"], "error", "{reply}");
    drop(ws);
    assert_eq!(g.delete(&format!("/api/kernels/{kernel}"), &ada).await, 204);

    let mut answered = released.clone();
    for c in answered["cells"].as_array_mut().unwrap() {
        if c["metadata"]["nbgrader"]["grade_id"] == "answer" {
            c["source"] = json!("let rows = read_csv(\"data/train.csv\").data.dim(0);");
        }
    }
    // Validate runs on the release's files: the hidden one is not there.
    let (status, checked) = g
        .post(
            &format!("{PATH}/validate"),
            &ada,
            json!({"notebook": answered}),
        )
        .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(points(&checked, "test_rows"), 1.0, "{checked}");
    assert_eq!(points(&checked, "test_labels"), 0.0, "{checked}");

    // A grading has both.
    let (status, sub) = g
        .post(
            &format!("{PATH}/submissions"),
            &ada,
            json!({"notebook": answered}),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    let sub = graded_within(
        &g,
        &ada,
        sub["id"].as_str().unwrap(),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(sub["state"], "graded", "{sub}");
    assert_eq!(points(&sub["feedback"], "test_rows"), 1.0, "{sub}");
    assert_eq!(points(&sub["feedback"], "test_labels"), 2.0, "{sub}");
    assert!(!sub.to_string().contains("label\\n7"), "{sub}");

    // A file added later: the engineer fetches what they lack, and keeps
    // their own copy of the rest.
    assert_eq!(put_file(&g, &tess, "notes.txt", "read me").await.0, 201);
    let (status, more) = g
        .post(&format!("{PATH}/fetch"), &ada, json!({"data_only": true}))
        .await;
    assert_eq!(status, 200, "{more}");
    assert_eq!(more["files"], json!(["ml/notes.txt"]), "{more}");
    assert_eq!(more["kept"], json!(["ml/data/train.csv"]), "{more}");

    // Removing a file; removing it again is a 404.
    assert_eq!(
        g.delete(&format!("{PATH}/files/labels.csv"), &tess).await,
        204
    );
    assert_eq!(
        g.delete(&format!("{PATH}/files/labels.csv"), &tess).await,
        404
    );
    assert_eq!(
        g.delete(&format!("{PATH}/files/notes.txt"), &ada).await,
        404
    );
}
