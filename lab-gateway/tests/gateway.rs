//! The gateway in-process on port 0, driven by real HTTP and websocket
//! clients, launching the real academy-candle kernel binary.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use lab_gateway::kernels::KernelManager;
use lab_gateway::kernelspecs::Specs;
use lab_gateway::store::{Role, Store};
use lab_gateway::{AppState, run};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_token_get_401_with_a_json_reason() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let r = g
        .http
        .get(format!("{}/api/kernelspecs", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "Unauthorized");
    for req in [
        g.http
            .get(format!("{}/api/kernelspecs", g.base))
            .header("Authorization", format!("token {token}")),
        g.http
            .get(format!("{}/api/kernelspecs", g.base))
            .header("Authorization", format!("Bearer {token}")),
        g.http
            .get(format!("{}/api/kernelspecs", g.base))
            .header("Cookie", format!("lab_token={token}")),
    ] {
        assert_eq!(req.send().await.unwrap().status().as_u16(), 200);
    }
    // A token in the URL only on a websocket upgrade (proxies log URLs).
    let r = g
        .http
        .get(format!("{}/api/kernelspecs?token={token}", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(g.store.revoke_token(&token).unwrap());
    assert_eq!(g.get("/api/kernelspecs", &token).await.0, 401);
    // The database holds no plain-text token.
    let raw = std::fs::read(g.data.path().join("lab.db")).unwrap();
    let wal = std::fs::read(g.data.path().join("lab.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kernelspecs_list_the_academy_kernels_and_unknown_ones_are_404() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let (status, specs) = g.get("/api/kernelspecs", &token).await;
    assert_eq!(status, 200);
    assert_eq!(specs["default"], "academy-candle");
    assert_eq!(
        specs["kernelspecs"]["academy-rust"]["spec"]["interrupt_mode"],
        "message"
    );
    let (status, body) = g.get("/api/kernelspecs/nope", &token).await;
    assert_eq!((status, body["reason"].as_str()), (404, Some("Not Found")));
    let (status, body) = g
        .post("/api/kernels", &token, json!({"name": "nope"}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["message"].as_str().unwrap().contains("nope"));
    let (status, _) = g
        .get("/api/kernels/00000000-0000-0000-0000-000000000000", &token)
        .await;
    assert_eq!(status, 404);
    let (status, _) = g.get("/api/no-such-route", &token).await;
    assert_eq!(status, 404);
    let landing = g.http.get(format!("{}/", g.base)).send().await.unwrap();
    assert_eq!(landing.status().as_u16(), 200);
    assert!(landing.text().await.unwrap().contains("/ui/app.js"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kernel_starts_executes_over_the_websocket_interrupts_restarts_and_stops() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let (status, model) = g
        .post("/api/kernels", &token, json!({"name": "academy-candle"}))
        .await;
    assert_eq!(status, 201, "{model}");
    let id = model["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert!(model["connections"].is_u64());
    let ts = model["last_activity"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.6fZ").is_ok(),
        "{ts}"
    );

    let (_, list) = g.get("/api/kernels", &token).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    let mut ws = connect(&g, &id, &token).await;
    let (reply, stream, result) = run_cell(&mut ws, "let x = 5; print(\"hello\"); x * 2").await;
    assert_eq!(reply["status"], "ok");
    assert_eq!(stream, "hello\n");
    assert_eq!(result, "10");
    let (_, model) = g.get(&format!("/api/kernels/{id}"), &token).await;
    assert_eq!(model["connections"], 1);

    // Interrupt a looping cell through REST; variables survive.
    let (msg_id, text) = execute_request("loop { x += 0; }");
    ws.send(Message::Text(text.into())).await.unwrap();
    // The loop runs once the kernel says it is busy with it.
    wait_msg(&mut ws, |m| {
        m["msg_type"] == "execute_input" && m["parent_header"]["msg_id"] == msg_id.as_str()
    })
    .await;
    let r = g
        .http
        .post(format!("{}/api/kernels/{id}/interrupt", g.base))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let reply = wait_msg(&mut ws, |m| {
        m["msg_type"] == "execute_reply" && m["parent_header"]["msg_id"] == msg_id.as_str()
    })
    .await;
    assert_eq!(reply["content"]["ename"], "KeyboardInterrupt");
    let (_, _, result) = run_cell(&mut ws, "x").await;
    assert_eq!(result, "5");

    // Restart: a fresh session on the same id; the open websocket follows.
    let (status, _) = g
        .post(&format!("/api/kernels/{id}/restart"), &token, json!({}))
        .await;
    assert_eq!(status, 200);
    // Answered once the new process is ready; the open websocket follows it.
    let (_, _, result) = run_cell(&mut ws, "is_def_var(\"x\")").await;
    assert_eq!(result, "false");

    assert_eq!(g.delete(&format!("/api/kernels/{id}"), &token).await, 204);
    assert_eq!(g.get(&format!("/api/kernels/{id}"), &token).await.0, 404);
    assert_eq!(g.delete(&format!("/api/kernels/{id}"), &token).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_user_never_learns_the_kernel_exists() {
    let g = start_gateway().await;
    let alice = g.user("alice");
    let bob = g.user("bob");
    let (_, model) = g
        .post("/api/kernels", &alice, json!({"name": "academy-candle"}))
        .await;
    let id = model["id"].as_str().unwrap().to_owned();
    assert_eq!(g.get(&format!("/api/kernels/{id}"), &bob).await.0, 404);
    assert_eq!(g.delete(&format!("/api/kernels/{id}"), &bob).await, 404);
    assert_eq!(
        g.post(&format!("/api/kernels/{id}/interrupt"), &bob, json!({}))
            .await
            .0,
        404
    );
    let (_, list) = g.get("/api/kernels", &bob).await;
    assert!(list.as_array().unwrap().is_empty());
    let url = format!("{}/api/kernels/{id}/channels?token={bob}", g.ws_base);
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(g.delete(&format!("/api/kernels/{id}"), &alice).await, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_close_codes_and_other_clients_carry_on() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let id = g.start_kernel(&token, "academy-candle").await;
    let mut good = connect(&g, &id, &token).await;
    for (frame, code) in [
        ("{not json".to_owned(), 1007u16),
        (
            r#"{"header":{},"content":{},"channel":"sideways"}"#.to_owned(),
            1008,
        ),
        // A channel name longer than a close frame's reason can hold.
        (
            format!(
                r#"{{"header":{{}},"content":{{}},"channel":"{}"}}"#,
                "x".repeat(500)
            ),
            1008,
        ),
        // A reply sent by a client, and a request on stdin: wrong types.
        (
            r#"{"header":{"msg_id":"r1","msg_type":"execute_reply"},"parent_header":{},"metadata":{},"content":{},"channel":"shell"}"#.to_owned(),
            1008,
        ),
        (
            r#"{"header":{"msg_id":"r2","msg_type":"execute_request"},"parent_header":{},"metadata":{},"content":{"code":"1"},"channel":"stdin"}"#.to_owned(),
            1008,
        ),
    ] {
        let mut bad = connect(&g, &id, &token).await;
        bad.send(Message::Text(frame.into())).await.unwrap();
        assert_eq!(close_code(&mut bad).await, Some(code));
    }
    let (reply, _, result) = run_cell(&mut good, "1 + 1").await;
    assert_eq!(
        (reply["status"].as_str(), result.as_str()),
        (Some("ok"), "2")
    );
    g.delete(&format!("/api/kernels/{id}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_kernel_is_dead_within_a_second_and_clients_are_told() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let id = g.start_kernel(&token, "academy-candle").await;
    let mut ws = connect(&g, &id, &token).await;
    run_cell(&mut ws, "1").await;
    // Find the kernel's process by its connection file, and kill -9 it.
    let needle = format!("kernel-{id}.json");
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd)
                .contains(&needle)
                .then(|| e.file_name().to_string_lossy().parse::<i32>().ok())?
        })
        .expect("kernel process");
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    loop {
        let Some(Ok(Message::Text(t))) = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .unwrap()
        else {
            panic!()
        };
        let m: Value = serde_json::from_str(&t).unwrap();
        if m["msg_type"] == "status" && m["content"]["execution_state"] == "dead" {
            break;
        }
    }
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    let (_, model) = g.get(&format!("/api/kernels/{id}"), &token).await;
    assert_eq!(model["execution_state"], "dead");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kernel_that_dies_while_starting_is_a_503_with_its_last_output() {
    let g = start_gateway().await;
    let token = g.user("alice");
    // A kernelspec whose process exits at once, saying why.
    let dir = g.data.path().join("specs/kernels/broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kernel.json"),
        r#"{"argv": ["/bin/sh", "-c", "echo 'No module named ipykernel' >&2; exit 3", "{connection_file}"], "display_name": "broken", "language": "sh"}"#,
    )
    .unwrap();
    let store = g.store.clone();
    let specs = Specs::discover(&[g.data.path().join("specs")], None);
    let launcher = Arc::new(launch::local::LocalLauncher::new(g.data.path().join("rt2")));
    let kernels = Arc::new(KernelManager::new(
        launcher,
        specs,
        store.clone(),
        g.data.path().join("users"),
    ));
    let user = store.user_for_token(&token).unwrap().unwrap();
    let started = Instant::now();
    let err = kernels
        .start(
            &user,
            serde_json::from_value(json!({"name": "broken"})).unwrap(),
        )
        .await
        .err()
        .expect("the start must fail");
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(
        text.contains("exited while starting") && text.contains("No module named ipykernel"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_bind_a_path_to_a_kernel_and_stay_private() {
    let g = start_gateway().await;
    let alice = g.user("alice");
    let bob = g.user("bob");
    let (status, s) = g
        .post(
            "/api/sessions",
            &alice,
            json!({"path": "work/lab1.ipynb", "type": "notebook", "kernel": {"name": "academy-candle"}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let sid = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["name"], "lab1.ipynb");
    assert_eq!(s["kernel"]["name"], "academy-candle");
    let kid = s["kernel"]["id"].as_str().unwrap().to_owned();
    // The same path gives the same session.
    let (_, again) = g
        .post("/api/sessions", &alice, json!({"path": "work/lab1.ipynb"}))
        .await;
    assert_eq!(again["id"], sid.as_str());
    let (_, list) = g.get("/api/sessions", &alice).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Bob sees nothing of it.
    assert_eq!(g.get(&format!("/api/sessions/{sid}"), &bob).await.0, 404);
    assert_eq!(g.delete(&format!("/api/sessions/{sid}"), &bob).await, 404);
    let (_, list) = g.get("/api/sessions", &bob).await;
    assert!(list.as_array().unwrap().is_empty());
    // Rename with PATCH.
    let r = g
        .http
        .patch(format!("{}/api/sessions/{sid}", g.base))
        .header("Authorization", format!("token {alice}"))
        .json(&json!({"path": "work/renamed.ipynb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["path"],
        "work/renamed.ipynb"
    );
    // Deleting the session shuts its kernel down.
    assert_eq!(g.delete(&format!("/api/sessions/{sid}"), &alice).await, 204);
    assert_eq!(g.get(&format!("/api/kernels/{kid}"), &alice).await.0, 404);
    assert_eq!(g.get(&format!("/api/sessions/{sid}"), &alice).await.0, 404);
    // A body that is not JSON is a 400 with a reason.
    let r = g
        .http
        .post(format!("{}/api/sessions", g.base))
        .header("Authorization", format!("token {alice}"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "Bad Request");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_kernels_websockets_messages_and_launches() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let id = g.start_kernel(&token, "academy-candle").await;
    let mut ws = connect(&g, &id, &token).await;
    run_cell(&mut ws, "print(\"x\")").await;
    let text = g
        .http
        .get(format!("{}/metrics", g.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"lab_kernels{state="idle",spec="academy-candle"} 1"#),
        "{text}"
    );
    assert!(text.contains("lab_websocket_clients 1"), "{text}");
    assert!(
        text.contains(r#"lab_messages_relayed_total{direction="to_kernel"} 1"#),
        "{text}"
    );
    assert!(text.contains("lab_kernel_launch_seconds_count 1"), "{text}");
    g.delete(&format!("/api/kernels/{id}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contents_create_save_rename_checkpoint_and_delete_in_the_users_own_folder() {
    use reqwest::Method;
    let g = start_gateway().await;
    let alice = g.user("alice");
    let bob = g.user("bob");
    let nb = json!({"cells": [{"cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": [], "execution_count": null, "id": "c1"}],
                    "metadata": {"kernelspec": {"name": "academy-candle"}}, "nbformat": 4, "nbformat_minor": 5});
    let (status, m) = send(
        &g,
        Method::PUT,
        "/api/contents/work/lab1.ipynb",
        &alice,
        Some(json!({"type": "directory"})),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let (status, m) = send(
        &g,
        Method::PUT,
        "/api/contents/work/a.ipynb",
        &alice,
        Some(json!({"type": "notebook", "content": nb})),
    )
    .await;
    assert_eq!((status, m["type"].as_str()), (201, Some("notebook")), "{m}");
    let (status, _) = send(
        &g,
        Method::PUT,
        "/api/contents/work/a.ipynb",
        &alice,
        Some(json!({"type": "notebook", "content": nb})),
    )
    .await;
    assert_eq!(status, 200);
    // The file is on disk, under alice's root, whole.
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(g.data.path().join("users/alice/work/a.ipynb")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["cells"][0]["source"], "1 + 1");
    let (_, m) = send(&g, Method::GET, "/api/contents/work/a.ipynb", &alice, None).await;
    assert_eq!(m["content"]["cells"][0]["source"], "1 + 1");
    let (_, dir) = send(&g, Method::GET, "/api/contents/work", &alice, None).await;
    let names: Vec<&str> = dir["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.ipynb", "lab1.ipynb"]);
    // New untitled notebook, copy, text file.
    let (status, m) = send(
        &g,
        Method::POST,
        "/api/contents/work",
        &alice,
        Some(json!({"type": "notebook"})),
    )
    .await;
    assert_eq!((status, m["name"].as_str()), (201, Some("Untitled.ipynb")));
    let (_, m) = send(
        &g,
        Method::POST,
        "/api/contents/work",
        &alice,
        Some(json!({"copy_from": "work/a.ipynb"})),
    )
    .await;
    assert_eq!(m["name"], "a-Copy.ipynb");
    let (status, _) = send(
        &g,
        Method::PUT,
        "/api/contents/notes.txt",
        &alice,
        Some(json!({"type": "file", "format": "text", "content": "hi"})),
    )
    .await;
    assert_eq!(status, 201);
    // Rename, conflict, checkpoints.
    let (status, m) = send(
        &g,
        Method::PATCH,
        "/api/contents/work/a.ipynb",
        &alice,
        Some(json!({"path": "work/b.ipynb"})),
    )
    .await;
    assert_eq!((status, m["path"].as_str()), (200, Some("work/b.ipynb")));
    let (status, _) = send(
        &g,
        Method::PATCH,
        "/api/contents/work/b.ipynb",
        &alice,
        Some(json!({"path": "work/a-Copy.ipynb"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, cp) = send(
        &g,
        Method::POST,
        "/api/contents/work/b.ipynb/checkpoints",
        &alice,
        None,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(cp["id"], "checkpoint");
    let mut changed = nb.clone();
    changed["cells"][0]["source"] = json!("2 + 2");
    send(
        &g,
        Method::PUT,
        "/api/contents/work/b.ipynb",
        &alice,
        Some(json!({"type": "notebook", "content": changed})),
    )
    .await;
    let (status, _) = send(
        &g,
        Method::POST,
        "/api/contents/work/b.ipynb/checkpoints/checkpoint",
        &alice,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, m) = send(&g, Method::GET, "/api/contents/work/b.ipynb", &alice, None).await;
    assert_eq!(
        m["content"]["cells"][0]["source"], "1 + 1",
        "restored from the checkpoint"
    );
    // Bob's root is his own: alice's file is not there.
    assert_eq!(
        send(&g, Method::GET, "/api/contents/work/b.ipynb", &bob, None)
            .await
            .0,
        404
    );
    // Bad input.
    let (status, body) = send(
        &g,
        Method::PUT,
        "/api/contents/bad.ipynb",
        &alice,
        Some(json!({"type": "notebook", "content": {"x": 1}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        send(
            &g,
            Method::DELETE,
            "/api/contents/work/b.ipynb",
            &alice,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        send(&g, Method::GET, "/api/contents/work/b.ipynb", &alice, None)
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn contents_refuse_paths_that_leave_the_users_folder() {
    use reqwest::Method;
    let g = start_gateway().await;
    let alice = g.user("alice");
    let bob = g.user("bob");
    send(
        &g,
        Method::PUT,
        "/api/contents/secret.txt",
        &bob,
        Some(json!({"type": "file", "content": "bob's"})),
    )
    .await;
    std::fs::create_dir_all(g.data.path().join("users/alice")).unwrap();
    std::os::unix::fs::symlink(
        g.data.path().join("users/bob"),
        g.data.path().join("users/alice/bob"),
    )
    .unwrap();
    for path in [
        "/api/contents/..%2Fbob%2Fsecret.txt",
        "/api/contents/x/..%2F..%2Fbob%2Fsecret.txt",
        "/api/contents/%2Fetc%2Fpasswd",
        "/api/contents/bob/secret.txt",
    ] {
        let (status, body) = send(&g, Method::GET, path, &alice, None).await;
        assert!(status == 403 || status == 404, "{path}: {status} {body}");
        assert_ne!(body["content"], "bob's", "{path}");
        let (status, _) = send(
            &g,
            Method::PUT,
            path,
            &alice,
            Some(json!({"type": "file", "content": "pwned"})),
        )
        .await;
        assert!(status == 403 || status == 404, "{path}: {status}");
    }
    let (_, listing) = send(&g, Method::GET, "/api/contents", &alice, None).await;
    assert!(
        listing["content"].as_array().unwrap().is_empty(),
        "the escaping symlink is not listed: {listing}"
    );
    assert_eq!(
        std::fs::read_to_string(g.data.path().join("users/bob/secret.txt")).unwrap(),
        "bob's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnect_with_the_same_session_gets_every_line_exactly_once() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let id = g.start_kernel(&token, "academy-candle").await;
    let session = "reconnecting-client";
    let mut ws = connect_session(&g, &id, &token, session, None).await;
    let (msg_id, text) =
        execute_request("for i in 1..=1000 { print(i); if i % 100 == 0 { sleep(0.05); } }");
    ws.send(Message::Text(text.into())).await.unwrap();
    let mut lines: Vec<u32> = Vec::new();
    let mut last_seen = String::new();
    let read = |m: &Value, lines: &mut Vec<u32>| -> bool {
        let mine = m["parent_header"]["msg_id"] == msg_id.as_str();
        if m["msg_type"] == "stream" && mine {
            lines.extend(
                m["content"]["text"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .map(|l| l.parse::<u32>().unwrap()),
            );
        }
        mine && m["msg_type"] == "status" && m["content"]["execution_state"] == "idle"
    };
    // Read about a fifth of the output, then drop the socket without a goodbye.
    while lines.len() < 200 {
        let m = next_msg(&mut ws).await;
        last_seen = m["header"]["msg_id"].as_str().unwrap().to_owned();
        read(&m, &mut lines);
    }
    drop(ws);
    // Back at once: the new websocket replaces the stale one and resumes.
    let mut ws = connect_session(&g, &id, &token, session, Some(&last_seen)).await;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("stalled");
        let t = match next {
            Some(Ok(Message::Text(t))) => t,
            other => panic!("{other:?}"),
        };
        let m: Value = serde_json::from_str(&t).unwrap();
        if read(&m, &mut lines) {
            break;
        }
    }
    let expected: Vec<u32> = (1..=1000).collect();
    assert_eq!(lines, expected, "every line exactly once, in order");
    g.delete(&format!("/api/kernels/{id}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_flood_is_cut_with_a_notice_and_the_cell_still_finishes() {
    let g = start_gateway_with(lab_gateway::ws::RateLimits {
        messages_per_second: 50.0,
        bytes_per_second: 1e6,
        window: Duration::from_secs(3),
    })
    .await;
    let token = g.user("alice");
    let id = g.start_kernel(&token, "academy-candle").await;
    let mut ws = connect(&g, &id, &token).await;
    let (reply, stream, _) = run_cell(&mut ws, "for i in 0..5000 { print(i); }").await;
    assert_eq!(reply["status"], "ok");
    let lines = stream.lines().filter(|l| l.parse::<u32>().is_ok()).count();
    assert!(
        lines <= 150,
        "{lines} lines passed a limit of 50/s over 3 s"
    );
    assert!(
        stream.contains("IOPub output rate exceeded"),
        "the client is told: {}",
        &stream[stream.len().saturating_sub(300)..]
    );
    g.delete(&format!("/api/kernels/{id}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_pool_kernel_is_handed_over_in_its_users_folder_and_the_pool_refills() {
    let g = start_gateway_full(
        lab_gateway::ws::RateLimits::default(),
        [("academy-candle".to_owned(), 1)].into(),
    )
    .await;
    let token = g.user("alice");
    let ready = |g: &Gateway, token: String| {
        let http = g.http.clone();
        let url = format!("{}/api/status", g.base);
        async move {
            for _ in 0..200 {
                let v: Value = http
                    .get(&url)
                    .header("Authorization", format!("token {token}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if v["warm_pool"]["academy-candle"] == 1 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(ready(&g, token.clone()).await, "the pool filled");
    // A file in alice's folder, read by a relative path: the kernel runs there.
    std::fs::create_dir_all(g.data.path().join("users/alice")).unwrap();
    std::fs::write(
        g.data.path().join("users/alice/data.csv"),
        "a,b\n1,2\n3,4\n",
    )
    .unwrap();
    let (status, model) = g
        .post("/api/kernels", &token, json!({"name": "academy-candle"}))
        .await;
    assert_eq!(status, 201, "{model}");
    let id = model["id"].as_str().unwrap().to_owned();
    let mut ws = connect(&g, &id, &token).await;
    let (reply, _, result) = run_cell(&mut ws, "read_csv(\"data.csv\").data.shape").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(result, "[2, 2]");
    // The handed-over kernel is alice's, and the pool starts another.
    let (_, list) = g.get("/api/kernels", &token).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(ready(&g, token.clone()).await, "the pool refilled");
    g.delete(&format!("/api/kernels/{id}"), &token).await;
    g.kernels.shutdown_pool().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_routes_answer_with_jupyter_shapes() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let (status, api) = g.get("/api", &token).await;
    assert_eq!(status, 200);
    assert!(api["version"].is_string());
    let (_, me) = g.get("/api/me", &token).await;
    assert_eq!(me["identity"]["username"], "alice");
    assert_eq!(me["identity"]["role"], "engineer");
    let (_, st) = g.get("/api/status", &token).await;
    assert_eq!(st["kernels"], 0);
    assert!(st["started"].is_string());
    for path in ["/healthz", "/readyz"] {
        let r = g
            .http
            .get(format!("{}{path}", g.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // A body that is not JSON is a 400 with a reason, not axum's plain text.
    let r = g
        .http
        .post(format!("{}/api/kernels", g.base))
        .header("Authorization", format!("token {token}"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "Bad Request");
}

#[tokio::test(flavor = "multi_thread")]
async fn kernelspec_resources_are_served_and_unknown_ones_are_404() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("share/kernels/logoed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kernel.json"),
        r#"{"argv": ["true"], "display_name": "L", "language": "x"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("logo-svg.svg"), "<svg/>").unwrap();
    let specs = Specs::discover(&[data.path().join("share")], None);
    let spec = specs.get("logoed").unwrap();
    assert_eq!(
        spec.resources()["logo-svg"],
        "/kernelspecs/logoed/logo-svg.svg"
    );
    assert!(spec.resource_path("logo-svg.svg").is_some());
    assert!(spec.resource_path("../kernel.json").is_none());
    assert!(spec.resource_path("missing.png").is_none());
    // And through HTTP, on a gateway whose specs include it.
    let store = Store::open(&data.path().join("lab.db")).unwrap();
    store.add_user("u", Role::Engineer, None).unwrap();
    let token = store.create_token("u", "t").unwrap().1;
    let launcher = Arc::new(launch::local::LocalLauncher::new(data.path().join("rt")));
    let kernels = Arc::new(KernelManager::new(
        launcher,
        specs,
        store.clone(),
        data.path().join("users"),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(store, kernels, data.path().join("users"));
    tokio::spawn(run(listener, state, std::future::pending()));
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("http://{addr}{path}"))
            .header("Authorization", format!("token {token}"))
            .send()
    };
    let r = get("/kernelspecs/logoed/logo-svg.svg").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert_eq!(
        get("/kernelspecs/logoed/nope.png")
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        get("/kernelspecs/nope/logo-svg.svg")
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_binary_and_iopub_frames_are_refused_with_close_codes() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let id = g.start_kernel(&token, "academy-candle").await;
    let close_code = |mut ws: Ws, frame: Message| async move {
        ws.send(frame).await.unwrap();
        close_code(&mut ws).await
    };
    let big = "x".repeat(lab_gateway::ws::MAX_FRAME + 1);
    let code = close_code(connect(&g, &id, &token).await, Message::Text(big.into())).await;
    assert_eq!(code, Some(1009), "oversized frame");
    let code = close_code(
        connect(&g, &id, &token).await,
        Message::Binary(vec![1, 2, 3].into()),
    )
    .await;
    assert_eq!(code, Some(1003), "binary without the v1 subprotocol");
    let iopub = r#"{"header":{"msg_id":"a","msg_type":"stream"},"content":{},"channel":"iopub"}"#;
    let code = close_code(connect(&g, &id, &token).await, Message::Text(iopub.into())).await;
    assert_eq!(code, Some(1008), "clients cannot send on iopub");
    // The kernel and its other clients carry on.
    let mut ws = connect(&g, &id, &token).await;
    let (reply, _, result) = run_cell(&mut ws, "40 + 2").await;
    assert_eq!(
        (reply["status"].as_str(), result.as_str()),
        (Some("ok"), "42")
    );
    g.delete(&format!("/api/kernels/{id}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_ui_logs_in_with_an_httponly_cookie_and_serves_its_assets_gzipped() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The page only runs our own script.
    let r = client.get(format!("{}/", g.base)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("object-src 'none'"),
        "{csp}"
    );
    // Nobody yet: a 200 with no identity, so the app's first look logs no error.
    let r = client
        .get(format!("{}/api/login", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["identity"], Value::Null);
    // A wrong token is a 401 and sets nothing.
    let r = client
        .post(format!("{}/api/login", g.base))
        .json(&json!({"token": "0123abcd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = client
        .post(format!("{}/api/login", g.base))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The right one sets an HttpOnly, SameSite=Strict cookie that authenticates.
    let r = client
        .post(format!("{}/api/login", g.base))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    // A browser session of its own, not the API token.
    let session = cookie
        .strip_prefix("lab_token=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    assert!(!session.is_empty() && session != token, "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let jar = format!("lab_token={session}");
    let r = client
        .get(format!("{}/api/login", g.base))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["identity"]["username"],
        "alice"
    );
    let r = client
        .get(format!("{}/api/contents", g.base))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A login URL only opens the app (which asks before it logs in): a
    // GET logs nobody in (login CSRF; tests/auth.rs).
    for link in [format!("/?token={token}"), "/?token=wrong".to_owned()] {
        let r = client
            .get(format!("{}{link}", g.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers().get("set-cookie").is_none());
    }
    // Logout clears it.
    let r = client
        .post(format!("{}/api/logout", g.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // Assets: gzip when accepted, plain otherwise, unknown files 404.
    let r = client
        .get(format!("{}/ui/app.js", g.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let gz = r.bytes().await.unwrap().len();
    let r = client
        .get(format!("{}/ui/app.js", g.base))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert!(r.bytes().await.unwrap().len() > gz);
    let r = client
        .get(format!("{}/ui/../lab.db", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = client
        .get(format!("{}/ui/nope.js", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// The browser adds the cookie whatever page makes the request, and
/// SameSite does not tell ports apart: a page on another port of this host
/// must not change anything, open a websocket, or log the browser in.
#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_request_from_another_origin_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let g = start_gateway().await;
    let token = g.user("alice");
    let jar = format!("lab_token={token}");
    let ours = g.base.clone();
    let evil = "http://127.0.0.1:1";
    let client = reqwest::Client::new();
    let start = |origin: Option<&str>, auth: bool| {
        let mut r = client
            .post(format!("{}/api/kernels", g.base))
            .json(&json!({"name": "academy-candle"}));
        r = if auth {
            r.header("authorization", format!("token {token}"))
        } else {
            r.header("cookie", &jar)
        };
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    // By cookie: from elsewhere, or with no Origin (no page of ours sends none), 403.
    for origin in [Some(evil), None] {
        let r = start(origin, false).await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{origin:?}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("Origin"),
            "{body}"
        );
    }
    assert_eq!(
        g.get("/api/kernels", &token).await.1,
        json!([]),
        "nothing started"
    );
    // Reading by cookie needs no Origin; a token in the header needs none either.
    let r = client
        .get(format!("{}/api/kernels", g.base))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = start(Some(evil), true).await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "a token is not sent by the browser on its own"
    );
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Our own page, by cookie: fine.
    let r = start(Some(&ours), false).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let second = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A websocket by cookie: only from our origin.
    let url = format!("{}/api/kernels/{id}/channels?session_id=s", g.ws_base);
    for (origin, ok) in [(evil, false), (ours.as_str(), true)] {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("cookie", jar.parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let result = tokio_tungstenite::connect_async(req).await;
        match (result, ok) {
            (Ok(_), true) => {}
            (Err(tokio_tungstenite::tungstenite::Error::Http(r)), false) => {
                assert_eq!(r.status().as_u16(), 403)
            }
            (other, _) => panic!("{origin}: {other:?}"),
        }
    }
    // Login from another page's form: refused, no cookie set.
    let r = client
        .post(format!("{}/api/login", g.base))
        .header("origin", evil)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    g.delete(&format!("/api/kernels/{id}"), &token).await;
    g.delete(&format!("/api/kernels/{second}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trainers_publish_to_a_course_and_engineers_take_their_own_copy() {
    let g = start_gateway().await;
    let trainer = g.user_in("tess", Role::Trainer, None);
    let engineer = g.user("eve");
    let nb = json!({"cells": [{"cell_type": "markdown", "id": "a1", "metadata": {}, "source": "# Lesson 1"}],
                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let put = |token: &str, path: &str, body: Value| {
        let req = g
            .http
            .put(format!("{}{path}", g.base))
            .header("Authorization", format!("token {token}"))
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, _) = put(
        &trainer,
        "/api/contents/lesson-1.ipynb",
        json!({"type": "notebook", "content": nb}),
    )
    .await;
    assert_eq!(status, 201);
    // An engineer cannot publish; a trainer can.
    let (status, body) = put(
        &engineer,
        "/api/courses/intro/lesson-1.ipynb",
        json!({"from": "lesson-1.ipynb"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = put(
        &trainer,
        "/api/courses/intro/lesson-1.ipynb",
        json!({"from": "lesson-1.ipynb"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Bad names and paths out of the trainer's root are refused.
    for (path, want) in [
        ("/api/courses/.hidden/x.ipynb", 400),
        ("/api/courses/intro/notes.txt", 400),
    ] {
        assert_eq!(
            put(&trainer, path, json!({"from": "lesson-1.ipynb"}))
                .await
                .0,
            want,
            "{path}"
        );
    }
    assert_eq!(
        put(
            &trainer,
            "/api/courses/intro/x.ipynb",
            json!({"from": "../eve/x.ipynb"})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        put(
            &trainer,
            "/api/courses/intro/x.ipynb",
            json!({"from": "missing.ipynb"})
        )
        .await
        .0,
        404
    );
    // Everyone sees the course.
    let (status, courses) = g.get("/api/courses", &engineer).await;
    assert_eq!(status, 200);
    assert_eq!(courses[0]["name"], "intro");
    assert_eq!(courses[0]["notebooks"][0]["name"], "lesson-1.ipynb");
    // The engineer's copy lands in their own root; a second copy gets a new name.
    let (status, copy) = g
        .post(
            "/api/courses/intro/lesson-1.ipynb/copy",
            &engineer,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, copy["path"].as_str()),
        (201, Some("intro/lesson-1.ipynb"))
    );
    let (status, mine) = g
        .get("/api/contents/intro/lesson-1.ipynb?content=1", &engineer)
        .await;
    assert_eq!(status, 200);
    assert_eq!(mine["content"]["cells"][0]["source"], "# Lesson 1");
    let (_, copy) = g
        .post(
            "/api/courses/intro/lesson-1.ipynb/copy",
            &engineer,
            json!({}),
        )
        .await;
    assert_eq!(copy["path"], "intro/lesson-1-1.ipynb");
    // Editing the copy leaves the course alone; the course is not in anyone's contents.
    let (status, _) = g.get("/api/contents/courses", &trainer).await;
    assert_eq!(status, 404);
    let (status, _) = g
        .post("/api/courses/intro/nope.ipynb/copy", &engineer, json!({}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        g.delete("/api/courses/intro/lesson-1.ipynb", &engineer)
            .await,
        403
    );
    assert_eq!(
        g.delete("/api/courses/intro/lesson-1.ipynb", &trainer)
            .await,
        204
    );
    let (_, courses) = g.get("/api/courses", &engineer).await;
    assert_eq!(courses[0]["notebooks"], json!([]));
}

/// The academy kernels the gateway knows without a kernelspec on disk (with
/// the kubernetes backend, say) are exactly what `academy-kernel install`
/// writes: the same argv shape, interrupt mode and declared resources.
#[test]
fn the_built_in_academy_specs_are_what_academy_kernel_installs() {
    let binary = academy_kernel();
    let prefix = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&binary)
        .args(["install", "--prefix"])
        .arg(prefix.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let built_in = Specs::discover(&[], Some(&binary));
    for name in ["academy-rust", "academy-candle"] {
        let file = prefix
            .path()
            .join(format!("share/jupyter/kernels/{name}/kernel.json"));
        let installed: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let ours = &built_in.get(name).unwrap().json;
        for key in [
            "display_name",
            "language",
            "interrupt_mode",
            "env",
            "metadata",
        ] {
            assert_eq!(ours[key], installed[key], "{name}: {key}");
        }
        assert_eq!(
            ours["argv"].as_array().unwrap()[1..],
            installed["argv"].as_array().unwrap()[1..],
            "{name}"
        );
    }
}

/// A reconnect with the same session_id replaces the stale socket: the old
/// one is closed with 4001 and the new one carries the session on.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_socket_with_the_same_session_replaces_the_first_with_4001() {
    let g = start_gateway().await;
    let token = g.user("alice");
    let id = g.start_kernel(&token, "academy-candle").await;
    let mut stale = connect_session(&g, &id, &token, "same-session", None).await;
    run_cell(&mut stale, "let kept = 20;").await;
    let mut fresh = connect_session(&g, &id, &token, "same-session", None).await;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), stale.next())
            .await
            .expect("the stale socket was not closed")
        {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 4001);
    let (reply, _, result) = run_cell(&mut fresh, "kept + 22").await;
    assert_eq!(
        (reply["status"].as_str(), result.as_str()),
        (Some("ok"), "42")
    );
    // Another session of the same kernel is not touched.
    let mut other = connect_session(&g, &id, &token, "other-session", None).await;
    let (_, _, result) = run_cell(&mut other, "kept").await;
    assert_eq!(result, "20");
    let (_, _, result) = run_cell(&mut fresh, "kept * 2").await;
    assert_eq!(result, "40");
    g.delete(&format!("/api/kernels/{id}"), &token).await;
}
