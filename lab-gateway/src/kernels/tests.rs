//! In-process tests of the kernel layer: the manager, the queue, the
//! culler, reclaim and re-attach, and the websocket bridge, against
//! [`FakeLauncher`] kernels over real ZeroMQ, HTTP and websockets. They run
//! in milliseconds and need no `academy-kernel` binary.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{CullPolicy, KernelManager, NOTICE_MIMETYPE};
use crate::fixtures::{Behaviour, FakeLauncher, fake_specs};
use crate::scheduling::{Scheduling, now_ms};
use crate::store::{Role, Store, User};

/// Every wait in these tests ends within this.
const WITHIN: Duration = Duration::from_secs(10);

struct Lab {
    kernels: Arc<KernelManager>,
    launcher: Arc<FakeLauncher>,
    store: Store,
    base: String,
    ws_base: String,
    token: String,
    _data: tempfile::TempDir,
}

/// A lab of `cluster` GPUs (`""` for none) on fake kernels, served on port 0.
async fn lab(cluster: &str, configure: impl FnOnce(KernelManager) -> KernelManager) -> Lab {
    let lab = quiet_lab(cluster, configure).await;
    lab.kernels.start_background();
    lab
}

/// A lab whose background task (admission's clock, the culler's tick) does
/// not run: the test drives `cull` itself.
async fn quiet_lab(cluster: &str, configure: impl FnOnce(KernelManager) -> KernelManager) -> Lab {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(&data.path().join("lab.db")).unwrap();
    let launcher = FakeLauncher::new();
    lab_on(data, store, launcher, cluster, configure).await
}

async fn lab_on(
    data: tempfile::TempDir,
    store: Store,
    launcher: Arc<FakeLauncher>,
    cluster: &str,
    configure: impl FnOnce(KernelManager) -> KernelManager,
) -> Lab {
    let cluster = scheduler::Cluster::parse(cluster).unwrap();
    let scheduling = Arc::new(
        Scheduling::new(
            cluster,
            store.clone(),
            Default::default(),
            Default::default(),
        )
        .unwrap(),
    );
    let manager = KernelManager::new(
        launcher.clone(),
        fake_specs(),
        store.clone(),
        data.path().join("users"),
    )
    .with_scheduling(scheduling)
    .with_queue_wait(Duration::ZERO)
    .with_orphan_timeout(None);
    let kernels = Arc::new(configure(manager));
    if store.user("ada").unwrap().is_none() {
        store.add_user("ada", Role::Engineer, None).unwrap();
    }
    let token = store.create_token("ada", "test").unwrap().1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = crate::AppState::new(store.clone(), kernels.clone(), data.path().join("users"));
    tokio::spawn(crate::run(listener, state, std::future::pending()));
    Lab {
        kernels,
        launcher,
        store,
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        token,
        _data: data,
    }
}

impl Lab {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = tokio::time::timeout(
            WITHIN,
            reqwest::Client::new()
                .request(method, format!("{}{path}", self.base))
                .header("Authorization", format!("token {}", self.token))
                .json(&body)
                .send(),
        )
        .await
        .expect("no answer in time")
        .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn start(&self, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, "/api/kernels", body).await
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn user(&self) -> User {
        self.store.user("ada").unwrap().unwrap()
    }

    /// Waits until the kernel's model satisfies `pred`.
    async fn wait_model(&self, id: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
        tokio::time::timeout(WITHIN, async {
            loop {
                let (status, m) = self
                    .send(
                        reqwest::Method::GET,
                        &format!("/api/kernels/{id}"),
                        json!(null),
                    )
                    .await;
                if pred(status, &m) {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the kernel never reached the state")
    }

    /// Runs `code` over a websocket; the text it printed.
    async fn run(&self, id: &str, code: &str) -> String {
        let url = format!(
            "{}/api/kernels/{id}/channels?token={}",
            self.ws_base, self.token
        );
        let (mut ws, _) = tokio::time::timeout(WITHIN, tokio_tungstenite::connect_async(url))
            .await
            .unwrap()
            .unwrap();
        let msg_id = uuid::Uuid::new_v4().to_string();
        let msg = json!({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "ada",
                       "session": "s", "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": false, "store_history": true,
                        "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
        });
        ws.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        let (mut out, mut replied, mut idle) = (String::new(), false, false);
        while !(replied && idle) {
            let next = tokio::time::timeout(WITHIN, ws.next())
                .await
                .expect("no reply");
            let Some(Ok(Message::Text(t))) = next else {
                panic!("websocket closed: {next:?}");
            };
            let m: Value = serde_json::from_str(&t).unwrap();
            if m["parent_header"]["msg_id"] != msg_id.as_str() {
                continue;
            }
            match m["msg_type"].as_str().unwrap_or_default() {
                "stream" => out.push_str(m["content"]["text"].as_str().unwrap_or_default()),
                "execute_reply" => replied = true,
                "status" => idle = m["content"]["execution_state"] == "idle",
                _ => {}
            }
        }
        out
    }
}

/// The gateway notice among what a subscriber got, waiting for it (other
/// messages, a kernel's own statuses, are passed over).
async fn next_notice(iopub: &mut super::Subscription) -> Value {
    loop {
        let m = tokio::time::timeout(WITHIN, iopub.rx.recv())
            .await
            .expect("no notice in time")
            .expect("the kernel's messages ended");
        if m.ids().1 == "display_data" {
            return serde_json::from_slice(&m.content).unwrap();
        }
    }
}

/// The gateway notice already received, if any, without waiting (for
/// paused time).
fn notice_now(iopub: &mut super::Subscription) -> Option<Value> {
    while let Ok(m) = iopub.rx.try_recv() {
        if m.ids().1 == "display_data" {
            return Some(serde_json::from_slice(&m.content).unwrap());
        }
    }
    None
}

fn gpu_start(gpus: u32) -> Value {
    json!({"name": "fake", "resources": {"gpus": gpus}})
}

#[tokio::test]
async fn a_start_is_admitted_launched_and_runs_cells_over_its_websocket() {
    let lab = lab("", |k| k).await;
    let (status, model) = lab.start(json!({"name": "fake"})).await;
    assert_eq!(status, 201, "{model}");
    assert_eq!(model["execution_state"], "idle");
    let id = model["id"].as_str().unwrap();
    assert_eq!(lab.run(id, "hello").await, "hello\n");
    // The kernel was given its identity and no more.
    let spec = lab.launcher.last_spec().unwrap();
    assert_eq!(spec.env["KERNEL_USERNAME"], "ada");
    assert_eq!(spec.env["KERNEL_ID"], id);
    assert!(spec.cwd.ends_with("users/ada"));
}

#[tokio::test]
async fn a_start_queued_for_a_gpu_launches_when_the_gpu_is_freed() {
    let lab = lab("1x1 H100-80GB", |k| k).await;
    let (status, first) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 201, "{first}");
    let (status, queued) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["execution_state"], "queued");
    assert_eq!(queued["queue"]["position"], 1);
    let queued_id = queued["id"].as_str().unwrap();
    assert_eq!(
        lab.launcher.launches(),
        1,
        "a queued start launches nothing"
    );
    let deleted = lab
        .send(
            reqwest::Method::DELETE,
            &format!("/api/kernels/{}", first["id"].as_str().unwrap()),
            json!(null),
        )
        .await;
    assert_eq!(deleted.0, 204);
    let running = lab
        .wait_model(queued_id, |_, m| m["execution_state"] == "idle")
        .await;
    assert_eq!(running["resources"]["gpus"], 1);
    assert_eq!(lab.launcher.launches(), 2);
    // Nothing is left queued in the store for a restarted gateway.
    assert!(lab.store.queued().unwrap().is_empty());
}

#[tokio::test]
async fn a_start_cancelled_while_queued_never_launches_and_gives_its_place_up() {
    let lab = lab("1x1 H100-80GB", |k| k).await;
    let (_, first) = lab.start(gpu_start(1)).await;
    let (status, queued) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 202);
    let queued_id = queued["id"].as_str().unwrap().to_owned();
    let (status, _) = lab
        .send(
            reqwest::Method::DELETE,
            &format!("/api/kernels/{queued_id}"),
            json!(null),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        lab.send(
            reqwest::Method::GET,
            &format!("/api/kernels/{queued_id}"),
            json!(null)
        )
        .await
        .0,
        404
    );
    // The GPU freed later goes to nobody: the cancelled start is not launched.
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(
        lab.send(
            reqwest::Method::DELETE,
            &format!("/api/kernels/{first_id}"),
            json!(null)
        )
        .await
        .0,
        204
    );
    let (status, third) = lab.start(gpu_start(1)).await;
    assert_eq!(
        status, 201,
        "the freed GPU is there for the next start: {third}"
    );
    assert_eq!(lab.launcher.launches(), 2);
    assert!(lab.store.queued().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_launch_reaches_the_client_and_the_metric_with_its_reason() {
    let lab = lab("1x1 H100-80GB", |k| k).await;
    lab.launcher
        .script(&[Behaviour::FailToLaunch, Behaviour::DieAtStart]);
    let (status, body) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "Service Unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("failed to start"),
        "{body}"
    );
    let (status, body) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("exited while starting"), "{body}");
    assert!(
        message.contains("exiting as told"),
        "the kernel's log is quoted: {body}"
    );
    let metrics = lab.metrics().await;
    for (reason, backend) in [("launch", "fake"), ("exited", "")] {
        let line = format!(
            "lab_kernel_launch_failures_total{{reason=\"{reason}\",backend=\"{backend}\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // Reasons that did not happen are there at 0, for alerts.
    assert!(
        metrics.contains("lab_kernel_launch_failures_total{reason=\"not_ready\",backend=\"\"} 0")
    );
    // Both GPUs went back: a third start gets the one GPU.
    let (status, body) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_queued_start_that_fails_at_launch_keeps_its_typed_reason_for_its_waiter() {
    let lab = lab("1x1 H100-80GB", |k| k).await;
    let (_, first) = lab.start(gpu_start(1)).await;
    let (_, queued) = lab.start(gpu_start(1)).await;
    let queued_id = queued["id"].as_str().unwrap().to_owned();
    let start = lab.kernels.queued_for(&lab.user(), &queued_id).unwrap();
    lab.launcher.script(&[Behaviour::FailToLaunch]);
    let first_id = first["id"].as_str().unwrap();
    lab.send(
        reqwest::Method::DELETE,
        &format!("/api/kernels/{first_id}"),
        json!(null),
    )
    .await;
    match start.wait(WITHIN).await {
        super::StartState::Failed(e) => assert_eq!(e.reason(), "launch", "{e}"),
        _ => panic!("the start did not fail"),
    }
}

#[tokio::test]
async fn a_reclaimed_kernel_is_warned_then_stopped_and_its_gpu_freed() {
    let lab = lab("1x1 H100-80GB", |k| k).await;
    let (_, model) = lab.start(gpu_start(1)).await;
    let id: uuid::Uuid = model["id"].as_str().unwrap().parse().unwrap();
    let kernel = lab.kernels.get_for(&lab.user(), &id.to_string()).unwrap();
    let mut iopub = kernel.subscribe();
    lab.kernels.handle(vec![scheduler::Event::Reclaim {
        kernel: id,
        for_group: "physics".into(),
        deadline: now_ms() + 50,
    }]);
    let content = next_notice(&mut iopub).await;
    assert_eq!(content["data"][NOTICE_MIMETYPE]["kind"], "reclaim");
    assert!(
        content["data"]["text/plain"]
            .as_str()
            .unwrap()
            .contains("physics")
    );
    lab.wait_model(&id.to_string(), |status, _| status == 404)
        .await;
    // Unlisted first, then stopped.
    tokio::time::timeout(WITHIN, async {
        while lab.launcher.running() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("its process is stopped");
    let (status, body) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn an_idle_kernel_is_warned_then_culled_on_paused_time() {
    let real = std::time::Instant::now();
    let policy = CullPolicy {
        idle_cpu: Some(Duration::from_secs(3600)),
        warning: Duration::from_secs(60),
        ..CullPolicy::default()
    };
    let lab = quiet_lab("", |k| k.with_cull(policy)).await;
    let (_, model) = lab.start(json!({"name": "fake"})).await;
    let id = model["id"].as_str().unwrap().to_owned();
    // A cell run to its end: every message of the start is through, so
    // nothing arriving late makes the kernel active again.
    lab.run(&id, "last words").await;
    let kernel = lab.kernels.get_for(&lab.user(), &id).unwrap();
    let mut iopub = kernel.subscribe();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3599)).await;
    lab.kernels.cull().await;
    assert!(notice_now(&mut iopub).is_none(), "not idle for an hour yet");
    tokio::time::advance(Duration::from_secs(1)).await;
    lab.kernels.cull().await;
    let content = notice_now(&mut iopub).expect("a warning");
    assert_eq!(content["data"][NOTICE_MIMETYPE]["kind"], "cull");
    assert_eq!(content["data"][NOTICE_MIMETYPE]["seconds_left"], 60);
    tokio::time::advance(Duration::from_secs(59)).await;
    lab.kernels.cull().await;
    assert_eq!(lab.kernels.all().len(), 1, "the warning is not over yet");
    tokio::time::advance(Duration::from_secs(1)).await;
    lab.kernels.cull().await;
    assert!(lab.kernels.all().is_empty(), "culled");
    assert_eq!(lab.launcher.running(), 0, "its process is gone");
    tokio::time::resume();
    assert!(lab.metrics().await.contains("lab_kernels_culled_total 1"));
    assert!(
        real.elapsed() < Duration::from_secs(1),
        "{:?}",
        real.elapsed()
    );
}

#[tokio::test]
async fn activity_after_a_cull_warning_calls_the_stop_off() {
    let policy = CullPolicy {
        idle_cpu: Some(Duration::from_secs(600)),
        ..CullPolicy::default()
    };
    let lab = quiet_lab("", |k| k.with_cull(policy)).await;
    let (_, model) = lab.start(json!({"name": "fake"})).await;
    let id = model["id"].as_str().unwrap().to_owned();
    lab.run(&id, "last words").await;
    let kernel = lab.kernels.get_for(&lab.user(), &id).unwrap();
    let mut iopub = kernel.subscribe();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(600)).await;
    lab.kernels.cull().await;
    tokio::time::resume();
    let warning = notice_now(&mut iopub).expect("the kernel was warned");
    assert_eq!(warning["data"][NOTICE_MIMETYPE]["kind"], "cull");
    assert_eq!(lab.run(&id, "still here").await, "still here\n");
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(60)).await;
    lab.kernels.cull().await;
    tokio::time::resume();
    assert_eq!(lab.kernels.all().len(), 1, "activity saved it");
}

#[tokio::test]
async fn a_restarted_gateway_reattaches_its_kernels_and_they_still_run_cells() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("lab.db");
    let launcher = FakeLauncher::new();
    let first = lab_on(
        tempfile::tempdir().unwrap(),
        Store::open(&db).unwrap(),
        launcher.clone(),
        "1x1 H100-80GB",
        |k| k,
    )
    .await;
    first.kernels.start_background();
    let (_, model) = first.start(gpu_start(1)).await;
    let id = model["id"].as_str().unwrap().to_owned();
    // A second gateway on the same store and backend (the first is gone).
    let second = lab_on(
        data,
        Store::open(&db).unwrap(),
        launcher,
        "1x1 H100-80GB",
        |k| k,
    )
    .await;
    second.kernels.start_background();
    second.kernels.reattach().await;
    let listed = second
        .send(reqwest::Method::GET, "/api/kernels", json!(null))
        .await
        .1;
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["resources"]["gpus"], 1, "its GPU is restored");
    assert_eq!(second.run(&id, "after").await, "after\n");
    // Admission knows the GPU is taken.
    let (status, queued) = second.start(gpu_start(1)).await;
    assert_eq!(status, 202, "{queued}");
}

#[tokio::test]
async fn a_pooled_start_takes_the_pool_kernels_id_and_asks_admission_once() {
    let pool = [("fake".to_owned(), 1)].into_iter().collect();
    let lab = lab("", |k| k.with_warm_pool(pool)).await;
    lab.kernels.fill_pool().await;
    assert_eq!(lab.kernels.pool_counts()["fake"], 1);
    let pooled = lab.launcher.launches();
    let pool_kernel = lab.launcher.last_spec().unwrap().env["KERNEL_ID"].clone();
    let (status, model) = lab.start(json!({"name": "fake"})).await;
    assert_eq!(status, 201, "{model}");
    let id = model["id"].as_str().unwrap();
    assert_eq!(id, pool_kernel, "the start took the pool kernel and its id");
    assert_eq!(lab.run(id, "pooled").await, "pooled\n");
    let by_id = lab.kernels.scheduling().grant_of(id.parse().unwrap());
    assert!(by_id.is_some(), "admission knows it by its own id");
    let admissions = lab.store.usage_between(0, now_ms() + 1000).unwrap();
    assert_eq!(
        admissions.len(),
        1,
        "admission was asked once: {admissions:?}"
    );
    assert_eq!(admissions[0].kernel_id.to_string(), id);
    // The pool refills behind it.
    tokio::time::timeout(WITHIN, async {
        while lab.launcher.launches() < pooled + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the pool refills");
}

#[tokio::test]
async fn a_start_deleted_while_it_launches_is_stopped_and_frees_its_gpu_only_then() {
    let lab = lab("1x1 H100-80GB", |k| {
        k.with_answer_after(Duration::from_millis(50))
    })
    .await;
    lab.launcher.hold();
    let (status, first) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 202, "{first}");
    let first_id = first["id"].as_str().unwrap().to_owned();
    let starting = lab
        .wait_model(&first_id, |_, m| m["launch"]["progress"].is_string())
        .await;
    assert_eq!(starting["execution_state"], "starting");
    let (status, second) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 202, "{second}");
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (status, _) = lab
        .send(
            reqwest::Method::DELETE,
            &format!("/api/kernels/{first_id}"),
            json!(null),
        )
        .await;
    assert_eq!(status, 204);
    // Its launch still holds the GPU: the next start stays queued.
    let (_, waiting) = lab
        .send(
            reqwest::Method::GET,
            &format!("/api/kernels/{second_id}"),
            json!(null),
        )
        .await;
    assert_eq!(waiting["execution_state"], "queued", "{waiting}");
    lab.launcher.open();
    // The deleted kernel is stopped once it runs; then the GPU moves on.
    lab.wait_model(&second_id, |_, m| m["execution_state"] == "idle")
        .await;
    assert_eq!(lab.launcher.launches(), 2);
    assert_eq!(
        lab.launcher.running(),
        1,
        "the deleted start's kernel is gone"
    );
    assert_eq!(
        lab.send(
            reqwest::Method::GET,
            &format!("/api/kernels/{first_id}"),
            json!(null)
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_reclaim_that_comes_while_the_kernel_launches_applies_once_it_runs() {
    let lab = lab("1x1 H100-80GB", |k| {
        k.with_answer_after(Duration::from_millis(50))
    })
    .await;
    lab.launcher.hold();
    let (status, model) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 202, "{model}");
    let id: uuid::Uuid = model["id"].as_str().unwrap().parse().unwrap();
    lab.kernels.handle(vec![scheduler::Event::Reclaim {
        kernel: id,
        for_group: "physics".into(),
        deadline: now_ms() + 3_000,
    }]);
    lab.launcher.open();
    // It runs, then the reclaim left on its start stops it at the deadline
    // (without it, it would run on).
    lab.wait_model(&id.to_string(), |_, m| m["execution_state"] == "idle")
        .await;
    lab.wait_model(&id.to_string(), |status, _| status == 404)
        .await;
    assert_eq!(lab.launcher.launches(), 1);
    let (status, body) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 201, "the GPU went back: {body}");
}
