//! Course ownership through the real HTTP API: a course belongs to the
//! trainer who first published to it and to the co-trainers they name; other
//! trainers can neither overwrite nor unpublish it; admins always can.

mod common;

use common::*;
use lab_gateway::store::Role;
use reqwest::Method;
use serde_json::{Value, json};

fn notebook(title: &str) -> Value {
    json!({"cells": [{"cell_type": "markdown", "id": "a1", "metadata": {}, "source": title}],
           "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
}

/// Adds (PUT) or removes (DELETE) `user` as a co-trainer of `course`.
async fn trainer(
    g: &Gateway,
    method: Method,
    course: &str,
    user: &str,
    token: &str,
) -> (u16, Value) {
    g.send(
        method,
        &format!("/api/courses/{course}/trainers/{user}"),
        token,
        Value::Null,
    )
    .await
}

/// Saves a notebook titled `title` at `path` in the token's own root.
async fn save(g: &Gateway, token: &str, path: &str, title: &str) {
    let (status, body) = g
        .send(
            Method::PUT,
            &format!("/api/contents/{path}"),
            token,
            json!({"type": "notebook", "content": notebook(title)}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

async fn publish(g: &Gateway, token: &str, course: &str, name: &str) -> (u16, Value) {
    g.send(
        Method::PUT,
        &format!("/api/courses/{course}/{name}"),
        token,
        json!({"from": "mine.ipynb"}),
    )
    .await
}

async fn unpublish(g: &Gateway, token: &str, course: &str, name: &str) -> (u16, Value) {
    g.send(
        Method::DELETE,
        &format!("/api/courses/{course}/{name}"),
        token,
        Value::Null,
    )
    .await
}

/// The title of a published notebook, through an engineer's copy.
async fn published_title(g: &Gateway, engineer: &str, course: &str, name: &str) -> String {
    let (status, copy) = g
        .post(
            &format!("/api/courses/{course}/{name}/copy"),
            engineer,
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{copy}");
    let (_, nb) = g
        .get(
            &format!("/api/contents/{}", copy["path"].as_str().unwrap()),
            engineer,
        )
        .await;
    nb["content"]["cells"][0]["source"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn course<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no course {name} in {list}"))
}

fn forbidden_because(status: u16, body: &Value, word: &str) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(word)),
        "{body}"
    );
}

#[tokio::test]
async fn another_trainer_cannot_overwrite_or_unpublish_a_course_until_named_co_trainer() {
    let g = start_gateway().await;
    let tess = g.user_in("tess", Role::Trainer, None);
    let tom = g.user_in("tom", Role::Trainer, None);
    let root = g.user_in("root", Role::Admin, None);
    let eve = g.user("eve");
    save(&g, &tess, "mine.ipynb", "tess's lesson").await;
    save(&g, &tom, "mine.ipynb", "tom's lesson").await;
    save(&g, &root, "mine.ipynb", "the admin's lesson").await;

    let (status, body) = publish(&g, &tess, "intro", "lesson-1.ipynb").await;
    assert_eq!(status, 200, "{body}");

    // Tom can neither overwrite, add to, nor unpublish tess's course.
    let (status, body) = publish(&g, &tom, "intro", "lesson-1.ipynb").await;
    forbidden_because(status, &body, "tess");
    let (status, body) = publish(&g, &tom, "intro", "lesson-2.ipynb").await;
    forbidden_because(status, &body, "tess");
    let (status, body) = unpublish(&g, &tom, "intro", "lesson-1.ipynb").await;
    forbidden_because(status, &body, "tess");
    assert_eq!(
        published_title(&g, &eve, "intro", "lesson-1.ipynb").await,
        "tess's lesson"
    );
    // Nor name himself co-trainer, nor take the course over.
    let (status, body) = trainer(&g, Method::PUT, "intro", "tom", &tom).await;
    forbidden_because(status, &body, "tess");
    let (status, body) = g
        .send(
            Method::PUT,
            "/api/courses/intro/owner",
            &tom,
            json!({"user": "tom"}),
        )
        .await;
    forbidden_because(status, &body, "admin");

    // Tess names tom co-trainer: now he can.
    let (status, body) = trainer(&g, Method::PUT, "intro", "tom", &tess).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = g.get("/api/courses", &eve).await;
    assert_eq!(course(&list, "intro")["owner"], "tess", "{list}");
    assert_eq!(course(&list, "intro")["trainers"], json!(["tom"]), "{list}");
    let (status, body) = publish(&g, &tom, "intro", "lesson-1.ipynb").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        published_title(&g, &eve, "intro", "lesson-1.ipynb").await,
        "tom's lesson"
    );
    // A co-trainer does not manage the course's trainers.
    let (status, body) = trainer(&g, Method::DELETE, "intro", "tom", &tom).await;
    forbidden_because(status, &body, "tess");

    // Only trainers can be co-trainers, and only users that exist.
    let (status, body) = trainer(&g, Method::PUT, "intro", "eve", &tess).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = trainer(&g, Method::PUT, "intro", "nobody", &tess).await;
    assert_eq!(status, 404, "{body}");

    // Tess takes tom off the course: he is refused again.
    let (status, body) = trainer(&g, Method::DELETE, "intro", "tom", &tess).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = unpublish(&g, &tom, "intro", "lesson-1.ipynb").await;
    forbidden_because(status, &body, "tess");

    // An admin always can.
    let (status, body) = publish(&g, &root, "intro", "lesson-1.ipynb").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = unpublish(&g, &root, "intro", "lesson-1.ipynb").await;
    assert_eq!(status, 204, "{body}");
    // Tom's own course is his.
    let (status, body) = publish(&g, &tom, "advanced", "lesson-1.ipynb").await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = g.get("/api/courses", &eve).await;
    assert_eq!(course(&list, "advanced")["owner"], "tom", "{list}");
    assert_eq!(course(&list, "advanced")["trainers"], json!([]), "{list}");
}

#[tokio::test]
async fn a_course_from_before_owners_is_admin_only_until_an_admin_names_its_owner() {
    let g = start_gateway().await;
    let tess = g.user_in("tess", Role::Trainer, None);
    let root = g.user_in("root", Role::Admin, None);
    save(&g, &tess, "mine.ipynb", "tess's lesson").await;
    // A course published before owners were recorded: a folder, no owner.
    let old = g.data.path().join("courses/legacy");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        old.join("lesson-1.ipynb"),
        notebook("old lesson").to_string(),
    )
    .unwrap();

    let (status, body) = publish(&g, &tess, "legacy", "lesson-1.ipynb").await;
    forbidden_because(status, &body, "admin");
    let (status, body) = unpublish(&g, &tess, "legacy", "lesson-1.ipynb").await;
    forbidden_because(status, &body, "admin");
    let (_, list) = g.get("/api/courses", &tess).await;
    assert_eq!(course(&list, "legacy")["owner"], Value::Null, "{list}");

    // Bad bodies get a reason, not a panic.
    let (status, body) = g
        .send(
            Method::PUT,
            "/api/courses/legacy/owner",
            &root,
            json!({"owner": "tess"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = g
        .send(
            Method::PUT,
            "/api/courses/legacy/owner",
            &root,
            json!({"user": "tess"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = publish(&g, &tess, "legacy", "lesson-1.ipynb").await;
    assert_eq!(status, 200, "{body}");
    // Managing a course that does not exist is a 404.
    let (status, body) = trainer(&g, Method::PUT, "nowhere", "tess", &root).await;
    assert_eq!(status, 404, "{body}");
}
