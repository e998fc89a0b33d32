//! Launches that fail, each with its reason: quota, conflicts, invalid
//! objects, Unschedulable (and its patience), image pulls, timeouts, and a
//! 410 on the watch that must not fail the launch.

use std::time::Duration;

use launch::Launcher;
use launch::kube::{KubeFailure, Timeout};
use serde_json::{Value, json};

use crate::fake::*;
use crate::fixtures::*;

#[tokio::test]
async fn an_exceeded_resource_quota_is_refused_with_the_quota_named() {
    let (server, launcher) = launcher_with(config()).await;
    let message = "pods \"alice-4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a09\" is forbidden: exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=8, limited: requests.nvidia.com/gpu=8";
    server.override_next(
        "POST",
        "/api/v1/namespaces/academy-lab/pods",
        403,
        status(
            403,
            "Forbidden",
            message,
            json!({"name": POD, "kind": "pods"}),
        ),
    );
    let failure = kube_failure(launcher.launch(spec("alice", 1, Some("H100-80GB"))).await);
    assert_eq!(failure, KubeFailure::QuotaExceeded(message.into()));
    assert!(failure.to_string().contains("exceeded quota: gpu-quota"));
    // Nothing else was attempted: no secret, no delete.
    assert_eq!(server.calls().len(), 1);
}

#[tokio::test]
async fn already_exists_invalid_and_not_found_map_to_their_reasons() {
    let (server, launcher) = launcher_with(config()).await;
    server.override_next(
        "POST",
        "/api/v1/namespaces/academy-lab/pods",
        409,
        status(
            409,
            "AlreadyExists",
            &format!("pods \"{POD}\" already exists"),
            json!({"name": POD, "kind": "pods"}),
        ),
    );
    let f = kube_failure(launcher.launch(spec("alice", 0, None)).await);
    assert_eq!(
        f,
        KubeFailure::AlreadyExists(format!("pods \"{POD}\" already exists"))
    );

    server.override_next(
        "POST",
        "/api/v1/namespaces/academy-lab/pods",
        422,
        status(
            422,
            "Invalid",
            &format!("Pod \"{POD}\" is invalid: spec.containers[0].image: Required value"),
            json!({"name": POD, "kind": "Pod", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}]}),
        ),
    );
    let f = kube_failure(launcher.launch(spec("alice", 0, None)).await);
    assert_eq!(
        f,
        KubeFailure::Invalid("spec.containers[0].image: Required value".into())
    );

    server.override_next(
        "POST",
        "/api/v1/namespaces/academy-lab/pods",
        404,
        status(
            404,
            "NotFound",
            "namespaces \"academy-lab\" not found",
            json!({"name": "academy-lab", "kind": "namespaces"}),
        ),
    );
    let f = kube_failure(launcher.launch(spec("alice", 0, None)).await);
    assert_eq!(
        f,
        KubeFailure::NotFound("namespaces \"academy-lab\" not found".into())
    );
}

#[tokio::test]
async fn an_unschedulable_pod_fails_with_the_schedulers_words_and_is_deleted() {
    let mut c = config();
    c.unschedulable_timeout = Timeout(Duration::ZERO);
    let (server, launcher) = launcher_with(c).await;
    let started = launch(&launcher, spec("alice", 2, Some("H100-80GB")));
    server.pod_created(NS, POD).await;
    let why = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    server.set_status(
        NS,
        POD,
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
               "reason": "Unschedulable", "message": why}]}),
        None,
    );
    let f = kube_failure(started.await.unwrap());
    assert_eq!(
        f,
        KubeFailure::Unschedulable {
            message: why.into()
        }
    );
    assert!(f.to_string().contains("Insufficient nvidia.com/gpu"));
    let calls = server.calls();
    let delete = calls.last().unwrap();
    assert_eq!(
        (delete.method.as_str(), delete.uri.as_str()),
        (
            "DELETE",
            format!("/api/v1/namespaces/{NS}/pods/{POD}?").as_str()
        )
    );
    assert_eq!(
        delete.body,
        json!({"gracePeriodSeconds": 10, "propagationPolicy": "Background"})
    );
}

/// A pod the scheduler cannot place yet may get a node soon (a deleted pod
/// frees its GPU, an autoscaler adds a node): within the patience it is
/// progress, not a failure; past it, the start fails with the reason.
#[tokio::test]
async fn an_unschedulable_pod_is_waited_for_within_its_patience() {
    let mut c = config();
    c.unschedulable_timeout = Timeout(Duration::from_millis(1500));
    let (server, launcher) = launcher_with(c).await;
    let (progress, mut said) = tokio::sync::mpsc::unbounded_channel();
    let mut s = spec("alice", 1, Some("H100-80GB"));
    s.progress = Some(progress);
    let started = launch(&launcher, s);
    server.pod_created(NS, POD).await;
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]});
    server.set_status(NS, POD, unschedulable.clone(), None);
    let mut saw_wait = false;
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), said.recv()).await {
        if p.contains("waiting for a node (Unschedulable): 0/3 nodes") {
            saw_wait = true;
            break;
        }
    }
    assert!(saw_wait);
    assert!(!started.is_finished(), "failed within its patience");
    // The GPU frees up: the pod is placed and becomes ready.
    server.set_status(NS, POD, running_ready("10.42.0.9"), Some("gpu-node-2"));
    let launched = started.await.unwrap().unwrap();
    assert_eq!(launched.connection.ip, "10.42.0.9");

    // Past the patience, with no change at all, it fails.
    let other = "alice-4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a0a";
    let mut s = spec("alice", 1, Some("H100-80GB"));
    s.kernel_id = uuid::Uuid::parse_str("4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a0a").unwrap();
    let t0 = std::time::Instant::now();
    let started = launch(&launcher, s);
    server.pod_created(NS, other).await;
    server.set_status(NS, other, unschedulable, None);
    let f = kube_failure(started.await.unwrap());
    assert!(matches!(f, KubeFailure::Unschedulable { .. }), "{f:?}");
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "well before launch_timeout"
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_named() {
    let (server, launcher) = launcher_with(config()).await;
    let started = launch(&launcher, spec("alice", 0, None));
    server.pod_created(NS, POD).await;
    let message = "Back-off pulling image \"registry.academy.example/academy-lab/kernel:0.1.0\"";
    server.set_status(
        NS,
        POD,
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
               "containerStatuses": [{"name": "kernel", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                   "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}}}]}),
        Some("gpu-node-1"),
    );
    let f = kube_failure(started.await.unwrap());
    assert_eq!(
        f,
        KubeFailure::ImagePull {
            image: "registry.academy.example/academy-lab/kernel:0.1.0".into(),
            reason: "ImagePullBackOff".into(),
            message: message.into(),
        }
    );
}

#[tokio::test]
async fn a_410_gone_on_the_watch_relists_and_the_launch_still_completes() {
    let (server, launcher) = launcher_with(config()).await;
    let started = launch(&launcher, spec("alice", 0, None));
    server.pod_created(NS, POD).await;
    // The server compacted its history: the watch's resourceVersion is gone.
    server.push_raw(
        "ERROR",
        status(
            410,
            "Expired",
            "too old resource version: 2 (41)",
            Value::Null,
        ),
    );
    // Meanwhile the pod became ready; only a fresh list can tell.
    {
        let mut st = server.lock();
        st.watch = None;
        let pod = st.pods.get_mut(&(NS.to_owned(), POD.to_owned())).unwrap();
        pod["status"] = running_ready("10.42.0.9");
        pod["metadata"]["resourceVersion"] = json!("41");
    }
    let launched = tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("the launch ended")
        .unwrap()
        .expect("launched");
    assert_eq!(launched.connection.ip, "10.42.0.9");
    assert_eq!(
        server.lock().lists,
        2,
        "one list at start, one after the 410"
    );
}

#[tokio::test]
async fn a_pod_that_never_gets_ready_times_out_saying_what_it_was_doing() {
    let mut c = config();
    c.launch_timeout = Timeout(Duration::from_secs(1));
    let (server, launcher) = launcher_with(c).await;
    let started = launch(&launcher, spec("alice", 0, None));
    server.pod_created(NS, POD).await;
    server.set_status(
        NS,
        POD,
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}),
        Some("node-7"),
    );
    let f = kube_failure(started.await.unwrap());
    match &f {
        KubeFailure::Timeout { waited, doing } => {
            assert_eq!(*waited, Duration::from_secs(1));
            assert!(
                doing.contains("node-7") && doing.contains("pulling image"),
                "{doing}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(server.calls().last().unwrap().method, "DELETE");
}
