//! What bounds grading, through the real HTTP API and real academy-candle
//! kernels: an assignment's submission caps (so hidden-test feedback is no
//! oracle to query at will), and a course's own grading quota group.

mod common;

use std::time::Duration;

use common::*;
use lab_gateway::store::Role;
use reqwest::Method;
use serde_json::{Value, json};

/// A one-answer academy-candle assignment in nbgrader's format.
fn source() -> Value {
    let meta = |nb: Value| json!({ "nbgrader": nb });
    json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "academy-candle", "display_name": "Candle", "language": "rhai"}},
        "cells": [
            {"cell_type": "code", "source": "// BEGIN SOLUTION\nlet answer = 42;\n// END SOLUTION",
             "outputs": [], "execution_count": null,
             "metadata": meta(json!({"grade": false, "grade_id": "answer", "locked": false,
                                      "schema_version": 3, "solution": true, "task": false}))},
            {"cell_type": "code", "source": "assert_eq(answer, 42);",
             "outputs": [], "execution_count": null,
             "metadata": meta(json!({"grade": true, "grade_id": "test", "locked": true, "points": 1,
                                      "schema_version": 3, "solution": false, "task": false}))},
        ]
    })
}

async fn import(g: &Gateway, trainer: &str, course: &str, policy: Value) {
    let path = format!("/api/courses/{course}/assignments/hw");
    let (status, body) = g
        .send(
            Method::PUT,
            &path,
            trainer,
            json!({"notebook": source(), "policy": policy}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = g
        .send(Method::PATCH, &path, trainer, json!({"released": true}))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn submit(g: &Gateway, token: &str, course: &str) -> (u16, Value) {
    let (status, released) = g
        .get(&format!("/api/courses/{course}/assignments/hw"), token)
        .await;
    assert_eq!(status, 200, "{released}");
    g.send(
        Method::POST,
        &format!("/api/courses/{course}/assignments/hw/submissions"),
        token,
        json!({"notebook": source()}),
    )
    .await
}

async fn graded(g: &Gateway, token: &str, id: &str) -> Value {
    graded_within(g, token, id, Duration::from_secs(120)).await
}

/// Waits until every submission to `course`'s assignment is graded, so no
/// grading kernel is still starting when the test (and its gateway) ends.
async fn settle(g: &Gateway, staff: &str, course: &str) {
    let (status, subs) = g
        .get(
            &format!("/api/courses/{course}/assignments/hw/submissions"),
            staff,
        )
        .await;
    assert_eq!(status, 200, "{subs}");
    for sub in subs.as_array().unwrap() {
        let sub = graded(g, staff, sub["id"].as_str().unwrap()).await;
        assert_eq!(sub["state"], "graded", "{sub}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_refuses_the_next_submission_and_says_when_one_may_come() {
    let g = start_gateway().await;
    let trainer = g.user_in("tess", Role::Trainer, None);
    let ada = g.user("ada");
    let bob = g.user("bob");
    import(&g, &trainer, "ml", json!({"submissions_per_day": 2})).await;

    for _ in 0..2 {
        let (status, sub) = submit(&g, &ada, "ml").await;
        assert_eq!(status, 201, "{sub}");
    }
    let (status, refused) = submit(&g, &ada, "ml").await;
    assert_eq!(status, 429, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("2 submissions"), "{message}");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d 00:00:00 UTC")
        .to_string();
    assert!(message.contains(&tomorrow), "{message}");

    // The refused one left nothing behind; another engineer is not capped.
    let (_, mine) = g
        .get("/api/courses/ml/assignments/hw/submissions", &ada)
        .await;
    assert_eq!(mine.as_array().unwrap().len(), 2);
    let stored = std::fs::read_dir(g.data.path().join("classroom/submissions"))
        .unwrap()
        .count();
    assert_eq!(stored, 2, "a refused submission's notebook was kept");
    let (status, sub) = submit(&g, &bob, "ml").await;
    assert_eq!(status, 201, "{sub}");

    // A cap of zero is a mistake, said as one.
    let (status, body) = g
        .send(
            Method::PATCH,
            "/api/courses/ml/assignments/hw",
            &trainer,
            json!({"policy": {"max_submissions": 0}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    settle(&g, &trainer, "ml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_cap_counts_every_earlier_submission() {
    let g = start_gateway().await;
    let trainer = g.user_in("tess", Role::Trainer, None);
    let ada = g.user("ada");
    import(&g, &trainer, "ml", json!({"max_submissions": 1})).await;
    let (status, sub) = submit(&g, &ada, "ml").await;
    assert_eq!(status, 201, "{sub}");
    let (status, refused) = submit(&g, &ada, "ml").await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["reason"], "Too Many Requests", "{refused}");
    settle(&g, &trainer, "ml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_course_with_a_grading_group_of_its_own_is_graded_in_it() {
    let g = start_gateway().await;
    let ops = g.user_in("olga", Role::Admin, None);
    let trainer = g.user_in("tess", Role::Trainer, None);
    let ada = g.user("ada");
    let (status, body) = g
        .send(
            Method::PUT,
            "/api/admin/groups/grading-ml",
            &ops,
            json!({"weight": 1, "guaranteed": {}, "borrow_limit": {}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    import(&g, &trainer, "ml", json!({})).await;
    import(&g, &trainer, "ai", json!({})).await;

    let started = lab_gateway::scheduling::now_ms();
    let mut groups = Vec::new();
    for course in ["ml", "ai"] {
        let (status, sub) = submit(&g, &ada, course).await;
        assert_eq!(status, 201, "{sub}");
        let sub = graded(&g, &ada, sub["id"].as_str().unwrap()).await;
        assert_eq!(sub["state"], "graded", "{sub}");
        let graders: Vec<_> = g
            .store
            .usage_between(started, lab_gateway::scheduling::now_ms() + 1)
            .unwrap()
            .into_iter()
            .filter(|u| u.user.starts_with(".grading-"))
            .map(|u| u.group)
            .collect();
        groups.push(graders);
    }
    assert_eq!(groups[0], ["grading-ml"], "course ml's own group");
    // Course ai has none: the shared group `grading`, which ops have not
    // made here either, so the scheduler's default group.
    assert_eq!(groups[1], ["grading-ml", "default"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_at_once_cannot_pass_a_cap_together() {
    let g = start_gateway().await;
    let trainer = g.user_in("tess", Role::Trainer, None);
    let ada = g.user("ada");
    import(&g, &trainer, "ml", json!({"max_submissions": 1})).await;
    let (a, b, c, d) = tokio::join!(
        submit(&g, &ada, "ml"),
        submit(&g, &ada, "ml"),
        submit(&g, &ada, "ml"),
        submit(&g, &ada, "ml"),
    );
    let mut statuses = [a.0, b.0, c.0, d.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 429, 429, 429]);
    let stored = std::fs::read_dir(g.data.path().join("classroom/submissions"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "a refused submission's notebook was kept");
    settle(&g, &trainer, "ml").await;
}
