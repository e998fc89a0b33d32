//! In-process tests of the kernel layer: the manager, the queue, the
//! culler, reclaim and re-attach, and the websocket bridge, against
//! [`FakeLauncher`] kernels over real ZeroMQ, HTTP and websockets. They run
//! in milliseconds and need no `academy-kernel` binary.

use std::time::Duration;

use serde_json::json;

use super::{CullPolicy, NOTICE_MIMETYPE, Restrictions, StartRequest};
use crate::fixtures::{Behaviour, FakeLauncher};
use crate::scheduling::now_ms;
use crate::store::Store;

mod harness;

use harness::*;

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

/// A kernel that has gone quiet, and a subscription to what it is sent from
/// now on. A cell run to its end first: every message of the start is
/// through, so nothing arriving late makes the kernel active again.
async fn idle_kernel(lab: &Lab) -> (String, super::Subscription) {
    let (_, model) = lab.start(json!({"name": "fake"})).await;
    let id = model["id"].as_str().unwrap().to_owned();
    lab.run(&id, "last words").await;
    let kernel = lab.kernels.get_for(&lab.user(), &id).unwrap();
    (id, kernel.subscribe())
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
    let (_, mut iopub) = idle_kernel(&lab).await;
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
    let (id, mut iopub) = idle_kernel(&lab).await;
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
    let handed = lab.launcher.handed_over().pop().unwrap();
    assert_eq!(handed.kernel_id.to_string(), id, "it was handed over");
    assert_eq!(handed.env["KERNEL_USERNAME"], "ada", "{:?}", handed.env);
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
async fn a_pooled_start_is_handed_its_variables_and_only_those_a_process_can_have() {
    let pool = [("fake".to_owned(), 1)].into_iter().collect();
    let lab = lab("", |k| k.with_warm_pool(pool)).await;
    lab.kernels.fill_pool().await;
    let env = json!({"KERNEL_COURSE": "ml101", "KERNEL_A=B": "x", "KERNEL_NUL": "a\u{0}b", "SECRET": "no"});
    let (status, model) = lab.start(json!({"name": "fake", "env": env})).await;
    assert_eq!(status, 201, "{model}");
    let handed = lab
        .launcher
        .handed_over()
        .pop()
        .expect("it came from the pool");
    assert_eq!(handed.kernel_id.to_string(), model["id"].as_str().unwrap());
    assert_eq!(handed.env["KERNEL_COURSE"], "ml101");
    for dropped in ["KERNEL_A=B", "KERNEL_NUL", "SECRET"] {
        assert!(
            !handed.env.contains_key(dropped),
            "{dropped}: {:?}",
            handed.env
        );
    }
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

#[tokio::test]
async fn a_kernel_that_dies_is_reported_dead_and_its_gpu_goes_back() {
    let lab = lab("1x1 H100-80GB", |k| k).await;
    let (_, model) = lab.start(gpu_start(1)).await;
    let id = model["id"].as_str().unwrap().to_owned();
    let (status, queued) = lab.start(gpu_start(1)).await;
    assert_eq!(status, 202, "the one GPU is taken: {queued}");
    let kernel = lab.kernels.get_for(&lab.user(), &id).unwrap();
    lab.launcher.crash(&kernel.current_endpoint().locator);
    lab.wait_model(&id, |_, m| m["execution_state"] == "dead")
        .await;
    // The monitor's word reaches admission: the queued start gets the GPU.
    let next = queued["id"].as_str().unwrap();
    lab.wait_model(next, |_, m| m["execution_state"] == "idle")
        .await;
}

/// A restart (an admin may restart any kernel) keeps what the gateway
/// imposed at the start: a grading kernel comes back offline, under its
/// memory limit.
#[tokio::test]
async fn a_restarted_kernel_keeps_its_restrictions() {
    let lab = lab("", |k| k).await;
    let restrictions = Restrictions {
        offline: true,
        memory_limit: Some(256 << 20),
        deadline: Some(std::time::Duration::from_secs(600)),
        ..Default::default()
    };
    let kernel = lab
        .kernels
        .start_running(
            &lab.user(),
            StartRequest {
                name: Some("fake".into()),
                fresh: true,
                restrictions: restrictions.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let restricted = |spec: launch::LaunchSpec| (spec.offline, spec.memory_limit, spec.deadline);
    let first = restricted(lab.launcher.last_spec().unwrap());
    assert_eq!(
        first,
        (
            true,
            Some(256 << 20),
            Some(std::time::Duration::from_secs(600))
        )
    );
    lab.kernels.restart(&kernel).await.unwrap();
    assert_eq!(lab.launcher.launches(), 2);
    assert_eq!(restricted(lab.launcher.last_spec().unwrap()), first);
    assert_eq!(lab.run(&kernel.id.to_string(), "again").await, "again\n");
}

/// A session's kernel starts in its notebook's folder, and a restart
/// starts it there again.
#[tokio::test]
async fn a_kernel_started_in_a_folder_restarts_in_it() {
    let lab = lab("", |k| k).await;
    let kernel = lab
        .kernels
        .start_running(
            &lab.user(),
            StartRequest {
                name: Some("fake".into()),
                fresh: true,
                folder: Some("ml101".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = lab.launcher.last_spec().unwrap();
    assert_eq!(first.workdir, Some(first.cwd.join("ml101")));
    lab.kernels.restart(&kernel).await.unwrap();
    let again = lab.launcher.last_spec().unwrap();
    assert_eq!((again.cwd, again.workdir), (first.cwd, first.workdir));
}
