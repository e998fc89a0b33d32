//! The watch and a launch that succeeds: list then watch, `/readyz`, and a
//! GPU kernel's restricted pod, its Secret, and the connection when Ready.

use std::collections::BTreeMap;
use std::time::Duration;

use launch::kube::{KubeLauncher, pod};
use launch::{KernelLocator, Launcher};
use serde_json::{Value, json};

use crate::fake::*;
use crate::fixtures::*;

#[tokio::test]
async fn the_watcher_lists_then_watches_the_owned_pods() {
    let (server, _launcher) = launcher_with(config()).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].uri,
        format!("/api/v1/namespaces/{NS}/pods?&{SELECTOR}&limit=500")
    );
    assert_eq!(
        seen[1].uri,
        format!(
            "/api/v1/namespaces/{NS}/pods?&watch=true&timeoutSeconds=290&{SELECTOR}&allowWatchBookmarks=true&resourceVersion=1"
        )
    );
}

/// `/readyz` asks the backend: not ready while its watch cannot list the
/// pods (here the Role lacks `list`, once), ready once the retry lists them.
#[tokio::test]
async fn the_backend_is_not_ready_until_its_watch_lists_the_pods() {
    let (server, client) = ApiServer::start();
    server.override_next(
        "GET",
        &format!("/api/v1/namespaces/{NS}/pods"),
        403,
        status(
            403,
            "Forbidden",
            "pods is forbidden: User \"system:serviceaccount:academy-lab:academy-lab-gateway\" cannot list resource \"pods\"",
            Value::Null,
        ),
    );
    let launcher = KubeLauncher::new(client, config());
    let why = launcher.ready().await.unwrap_err();
    assert!(why.contains("has not listed the pods"), "{why}");
    server.watching().await;
    for _ in 0..200 {
        if launcher.ready().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(launcher.ready().await, Ok(()));
}

#[tokio::test]
async fn a_gpu_kernel_gets_a_restricted_pod_then_its_secret_and_connects_when_ready() {
    let (server, launcher) = launcher_with(config()).await;
    let (progress, mut said) = tokio::sync::mpsc::unbounded_channel();
    let mut s = spec("alice", 1, Some("H100-80GB"));
    s.progress = Some(progress);
    let started = launch(&launcher, s.clone());
    server.pod_created(NS, POD).await;
    server.set_status(
        NS,
        POD,
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
               "containerStatuses": [{"name": "kernel", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                   "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        Some("gpu-node-3"),
    );
    let mut messages = Vec::new();
    while !messages
        .iter()
        .any(|m: &String| m.contains("pulling image"))
    {
        let m = tokio::time::timeout(Duration::from_secs(5), said.recv())
            .await
            .expect("progress within 5 s")
            .expect("progress channel open");
        messages.push(m);
    }
    server.set_status(NS, POD, running_ready("10.42.0.17"), Some("gpu-node-3"));
    let launched = started.await.unwrap().expect("launched");
    assert_eq!(launched.connection.ip, "10.42.0.17");
    assert_eq!(
        (launched.connection.shell_port, launched.connection.hb_port),
        (9000, 9004)
    );
    assert_eq!(
        launched.locator,
        KernelLocator::Pod {
            namespace: NS.into(),
            name: POD.into()
        }
    );

    let calls = server.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    // 1. The pod, exactly as the builder makes it.
    assert_eq!(
        (calls[0].method.as_str(), calls[0].uri.as_str()),
        ("POST", "/api/v1/namespaces/academy-lab/pods?")
    );
    let body = &calls[0].body;
    let kernel = pod::KernelPod {
        kernel_id: s.kernel_id,
        user: "alice".into(),
        group: Some("Cohort 7".into()),
        argv: vec![
            "/usr/local/bin/academy-kernel".into(),
            "candle".into(),
            "-f".into(),
            pod::CONNECTION_FILE.into(),
        ],
        env: BTreeMap::from([
            ("KERNEL_USERNAME".into(), "alice".into()),
            ("CUDA_VISIBLE_DEVICES".into(), "0".into()),
        ]),
        gpus: 1,
        gpu_model: Some("H100-80GB".into()),
        cpu: None,
        memory: None,
        offline: false,
        work: None,
        start_in: None,
        read_only: Vec::new(),
        deadline_s: None,
    };
    assert_eq!(
        body,
        &serde_json::to_value(pod::build_pod(&config(), &kernel)).unwrap()
    );
    let c = &body["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert!(c["resources"]["requests"].get("nvidia.com/gpu").is_none());
    assert_eq!(
        body["spec"]["nodeSelector"]["nvidia.com/gpu.product"],
        "NVIDIA-H100-80GB-HBM3"
    );
    assert_eq!(
        body["spec"]["tolerations"],
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    );
    assert_eq!(body["spec"]["restartPolicy"], "Never");
    assert_eq!(body["spec"]["automountServiceAccountToken"], false);
    assert_eq!(body["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(body["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        body["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        body["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );
    let labels = &body["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "academy-lab");
    assert_eq!(labels["app.kubernetes.io/component"], "kernel");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "academy-lab-gateway"
    );
    assert_eq!(labels["app.kubernetes.io/part-of"], "academy-lab");
    assert_eq!(labels["academy-lab.io/kernel-id"], s.kernel_id.to_string());
    assert_eq!(labels["academy-lab.io/user"], "alice");
    assert_eq!(labels["academy-lab.io/group"], "Cohort_7");
    assert_eq!(labels["kueue.x-k8s.io/queue-name"], "cohort-7");
    // Not offline: the kernels' policy (DNS, mirrors) selects it.
    assert!(labels.get("academy-lab.io/egress").is_none(), "{labels}");
    let shm = body["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "dshm")
        .unwrap();
    assert_eq!(shm["emptyDir"]["medium"], "Memory");
    let env = c["env"].as_array().unwrap();
    assert!(
        !env.iter()
            .any(|e| e["name"] == "CUDA_VISIBLE_DEVICES" || e["name"] == "ACADEMY_VIRTUAL_GPU")
    );
    // The key is never in the pod spec.
    assert!(!body.to_string().contains(&launched.connection.key));

    // 2. The Secret, owned by the pod the server created.
    assert_eq!(
        (calls[1].method.as_str(), calls[1].uri.as_str()),
        ("POST", "/api/v1/namespaces/academy-lab/secrets?")
    );
    let secret = &calls[1].body;
    assert_eq!(secret["metadata"]["name"], format!("{POD}-connection"));
    assert_eq!(
        secret["metadata"]["ownerReferences"],
        // No blockOwnerDeletion: it needs `update` on pods/finalizers where
        // OwnerReferencesPermissionEnforcement is on, and GC needs no block.
        json!([{"apiVersion": "v1", "kind": "Pod", "name": POD, "uid": format!("uid-{POD}"),
                "controller": true}])
    );
    let file: Value =
        serde_json::from_str(secret["stringData"]["connection.json"].as_str().unwrap()).unwrap();
    assert_eq!(file["key"], launched.connection.key.as_str());
    assert_eq!(file["ip"], "0.0.0.0");
    assert_eq!(file["shell_port"], 9000);

    assert!(
        messages
            .iter()
            .any(|m| m.contains("pulling image") && m.contains("gpu-node-3")),
        "{messages:?}"
    );

    // Liveness comes from the watch cache: no request.
    let before = server.seen().len();
    assert!(launcher.is_alive(&launched.locator).await);
    assert_eq!(server.seen().len(), before);
}

/// A launch's memory limit (a grading kernel's policy) is its pod's memory,
/// request and limit, over the memory the start asked for.
#[tokio::test]
async fn a_launchs_memory_limit_is_its_pods_memory() {
    let (server, launcher) = launcher_with(config()).await;
    let mut s = spec("alice", 0, None);
    s.memory = Some("8Gi".into());
    s.memory_limit = Some(2048 << 20);
    let started = launch(&launcher, s);
    server.pod_created(NS, POD).await;
    let calls = server.calls();
    assert_eq!(calls[0].method, "POST", "{calls:#?}");
    let resources = &calls[0].body["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"]["memory"], "2147483648");
    assert_eq!(resources["requests"]["memory"], "2147483648");
    started.abort();
}
