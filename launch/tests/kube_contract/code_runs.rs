//! Competition pods (issue 16), with `[kubernetes.shared_data]`: a code
//! submission's run is a pod with no egress at all, its GPU as a limit, a
//! deadline the cluster enforces, its memory limit, working in its own
//! folder on the shared claim and reading the competition's staged files
//! from it read-only by subPath. A participant's kernel reads the
//! participant files the same way. Nothing ever mounts a competition's own
//! folder, where the solution is, nor the claim's root.

use std::time::Duration;

use launch::kube::config::SharedData;
use launch::kube::pod;
use launch::{LaunchError, LaunchSpec, ReadOnlyMount};
use serde_json::{Value, json};

use crate::fixtures::*;

fn shared() -> launch::kube::KubeConfig {
    let mut c = config();
    c.shared_data = Some(SharedData {
        claim: "academy-lab-shared".into(),
        mount: "/data".into(),
    });
    c
}

const RUNNER: &str = ".compete-7-1";

/// What the gateway's runner launches for attempt 1 of submission 7.
fn code_run() -> LaunchSpec {
    let mut s = spec(RUNNER, 1, Some("H100-80GB"));
    s.offline = true;
    s.group = Some("competitions".into());
    s.cwd = "/data/users/.compete-7-1".into();
    s.workdir = Some("/data/users/.compete-7-1/work".into());
    s.memory_limit = Some(2048 << 20);
    s.deadline = Some(Duration::from_secs(3600 + 600));
    s.read_only = vec![ReadOnlyMount {
        source: "/data/competitions/spirals/runs/7-1".into(),
        at: "competitions/spirals".into(),
    }];
    s
}

/// Launches `s` against the fake and returns the pod it created.
async fn created_pod(config: launch::kube::KubeConfig, s: LaunchSpec) -> Value {
    let name = pod::pod_name(&s.user, s.kernel_id);
    let (server, launcher) = launcher_with(config).await;
    let started = launch(&launcher, s);
    server.pod_created(NS, &name).await;
    server.set_status(NS, &name, running_ready("10.1.2.20"), Some("n"));
    started.await.unwrap().unwrap();
    server
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.uri == format!("/api/v1/namespaces/{NS}/pods?"))
        .expect("the pod was created")
        .body
}

/// Every subPath the pod mounts from the shared claim, with its mount.
fn claim_mounts(pod: &Value) -> Vec<(String, Value)> {
    let spec = &pod["spec"];
    let on_claim: Vec<&str> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["persistentVolumeClaim"]["claimName"] == "academy-lab-shared")
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    spec["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| on_claim.contains(&m["name"].as_str().unwrap()))
        .map(|m| (m["subPath"].as_str().unwrap_or("").to_owned(), m.clone()))
        .collect()
}

#[tokio::test]
async fn a_code_runs_pod_is_offline_bounded_and_reads_its_files_read_only() {
    let pod = created_pod(shared(), code_run()).await;
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    // No egress: only the offline policy selects it (see `offline.rs`).
    assert_eq!(pod["metadata"]["labels"]["academy-lab.io/egress"], "none");
    assert_eq!(
        pod["metadata"]["labels"]["academy-lab.io/group"],
        "competitions"
    );
    // The GPU as a limit only; memory request = limit = the competition's.
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert!(
        container["resources"]["requests"]
            .get("nvidia.com/gpu")
            .is_none()
    );
    assert_eq!(
        container["resources"]["limits"]["memory"],
        (2048u64 << 20).to_string()
    );
    assert_eq!(
        container["resources"]["requests"]["memory"],
        (2048u64 << 20).to_string()
    );
    // The cluster ends it even if the gateway that started it is gone.
    assert_eq!(spec["activeDeadlineSeconds"], 4200);
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["automountServiceAccountToken"], false);
    // Its own folder on the claim, writable; the staged files read-only,
    // where the notebook expects them; nothing else of the claim.
    let mounts = claim_mounts(&pod);
    assert_eq!(
        mounts
            .iter()
            .map(|(p, m)| (
                p.as_str(),
                m["mountPath"].as_str().unwrap(),
                m["readOnly"].as_bool()
            ))
            .collect::<Vec<_>>(),
        [
            ("users/.compete-7-1", "/home/academy/work", None),
            (
                "competitions/spirals/runs/7-1",
                "/home/academy/work/competitions/spirals",
                Some(true)
            ),
        ]
    );
    let read_only_volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mounts[1].1["name"])
        .unwrap();
    assert_eq!(
        read_only_volume["persistentVolumeClaim"],
        json!({"claimName": "academy-lab-shared", "readOnly": true})
    );
    // It starts in the notebook's folder.
    assert_eq!(container["workingDir"], "/home/academy/work/work");
    let serialized = pod.to_string();
    assert!(!serialized.contains("solution"), "{serialized}");
}

#[tokio::test]
async fn a_participants_kernel_reads_the_participant_files_read_only() {
    let mut s = spec("alice", 0, None);
    s.cwd = "/data/users/alice".into();
    s.read_only = vec![ReadOnlyMount {
        source: "/data/competitions/spirals/data".into(),
        at: "competitions/spirals".into(),
    }];
    let pod = created_pod(shared(), s).await;
    assert!(
        pod["metadata"]["labels"]
            .get("academy-lab.io/egress")
            .is_none()
    );
    assert!(pod["spec"].get("activeDeadlineSeconds").is_none());
    let mounts: Vec<(String, Option<bool>)> = claim_mounts(&pod)
        .into_iter()
        .map(|(p, m)| (p, m["readOnly"].as_bool()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("users/alice".to_owned(), None),
            ("competitions/spirals/data".to_owned(), Some(true)),
        ]
    );
}

/// Without a shared claim a participant's pod keeps its own volume: the
/// gateway's folders are not on the nodes, so it gets none of them (never
/// the gateway's path as if it were the pod's). A code run, which could
/// neither read its files nor leave its output, is refused before anything
/// is created (the gateway's platform failure, never charged to its team).
#[tokio::test]
async fn without_a_shared_claim_a_participant_gets_no_folder_and_a_code_run_no_pod() {
    let mut s = code_run();
    s.offline = false;
    s.deadline = None;
    let pod = created_pod(config(), s).await;
    assert!(claim_mounts(&pod).is_empty());
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(
        !mounts.contains("competitions") && !mounts.contains("subPath"),
        "{mounts}"
    );

    let (server, launcher) = launcher_with(config()).await;
    let got = launch(&launcher, code_run()).await.unwrap();
    assert!(
        matches!(&got, Err(LaunchError::Spec(m)) if m.contains("shared_data")),
        "{got:?}"
    );
    assert!(server.calls().iter().all(|c| c.method != "POST"));
}

/// A folder not on the claim, or a place that climbs out of the work
/// folder, is refused before anything is created.
#[tokio::test]
async fn folders_off_the_claim_are_refused() {
    for bad in [
        ReadOnlyMount {
            source: "/etc".into(),
            at: "competitions/spirals".into(),
        },
        ReadOnlyMount {
            source: "/data/../etc".into(),
            at: "competitions/spirals".into(),
        },
        ReadOnlyMount {
            source: "/data/competitions/spirals/data".into(),
            at: "../../etc".into(),
        },
    ] {
        let mut s = code_run();
        s.read_only = vec![bad.clone()];
        let (server, launcher) = launcher_with(shared()).await;
        let got = launch(&launcher, s).await.unwrap();
        assert!(matches!(got, Err(LaunchError::Spec(_))), "{bad:?}: {got:?}");
        assert!(
            server.calls().iter().all(|c| c.method != "POST"),
            "{bad:?}: nothing is created"
        );
    }
}
