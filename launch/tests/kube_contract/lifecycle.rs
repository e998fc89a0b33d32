//! After the launch: kill, adoption of orphans, per-user namespaces, the
//! notebooks PVC, and the log tail.

use std::collections::HashSet;
use std::time::Duration;

use launch::kube::{KubeLauncher, pod};
use launch::{KernelLocator, KernelSignal, LaunchError, Launcher};
use serde_json::{Value, json};

use crate::fake::*;
use crate::fixtures::*;

#[tokio::test]
async fn kill_deletes_the_pod_and_a_pod_already_gone_is_fine() {
    let (server, launcher) = launcher_with(config()).await;
    let started = launch(&launcher, spec("alice", 0, None));
    server.pod_created(NS, POD).await;
    server.set_status(NS, POD, running_ready("10.42.0.3"), Some("n1"));
    let launched = started.await.unwrap().unwrap();
    launcher
        .signal(&launched.locator, KernelSignal::Kill)
        .await
        .unwrap();
    for _ in 0..100 {
        if !launcher.is_alive(&launched.locator).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!launcher.is_alive(&launched.locator).await);
    // Deleting again (cleanup after kill) meets a 404, which is success.
    launcher.cleanup(uuid::Uuid::nil(), &launched.locator).await;
    let deletes: Vec<Seen> = server
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 2);
    assert!(matches!(
        launcher
            .signal(&launched.locator, KernelSignal::Interrupt)
            .await,
        Err(LaunchError::NoSignals(_))
    ));
}

#[tokio::test]
async fn adopt_keeps_known_kernels_and_deletes_orphans() {
    let (server, client) = ApiServer::start();
    let known = uuid::Uuid::new_v4();
    let orphan = uuid::Uuid::new_v4();
    for (id, name) in [(known, "bob-known"), (orphan, "bob-orphan")] {
        server.insert_pod(
            NS,
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": NS, "resourceVersion": "5", "uid": name,
                                "labels": {"app.kubernetes.io/managed-by": "academy-lab-gateway",
                                           "academy-lab.io/kernel-id": id.to_string()}},
                   "spec": {"containers": [{"name": "kernel", "image": "k"}]},
                   "status": running_ready("10.0.0.1")}),
        );
    }
    let launcher = KubeLauncher::new(client, config());
    let stopped = launcher.adopt(&HashSet::from([known])).await.unwrap();
    assert_eq!(stopped, vec![orphan]);
    let calls = server.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].uri.as_str()),
        ("DELETE", "/api/v1/namespaces/academy-lab/pods/bob-orphan?")
    );
    assert!(
        launcher
            .is_alive(&KernelLocator::Pod {
                namespace: NS.into(),
                name: "bob-known".into()
            })
            .await
    );
}

#[tokio::test]
async fn per_user_namespaces_are_created_on_demand_and_watched_cluster_wide() {
    let mut c = config();
    c.namespace_per_user = Some("lab-{user}".into());
    let (server, launcher) = launcher_with(c).await;
    assert_eq!(
        server.seen()[0].uri,
        format!("/api/v1/pods?&{SELECTOR}&limit=500")
    );
    server.override_next(
        "POST",
        "/api/v1/namespaces",
        409,
        status(
            409,
            "AlreadyExists",
            "namespaces \"lab-alice\" already exists",
            Value::Null,
        ),
    );
    // Not a DNS label as it is: its sanitised form and a hash of the name
    // (pinned here: existing namespaces must keep their names).
    let started = launch(&launcher, spec("Alice.Smith", 0, None));
    let name = "alice-smith-4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a09";
    server.pod_created("lab-alice-smith-bdd645be95", name).await;
    server.set_status(
        "lab-alice-smith-bdd645be95",
        name,
        running_ready("10.1.2.3"),
        Some("n"),
    );
    started.await.unwrap().unwrap();
    let calls = server.calls();
    let ns = "lab-alice-smith-bdd645be95";
    assert_eq!(
        (calls[0].method.as_str(), calls[0].uri.as_str()),
        ("POST", "/api/v1/namespaces?")
    );
    assert_eq!(calls[0].body["metadata"]["name"], ns);
    assert_eq!(
        calls[0].body["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    // Kernel pods there accept the gateway only, as in the shared namespace.
    assert_eq!(
        (calls[1].method.as_str(), calls[1].uri.as_str()),
        (
            "POST",
            "/apis/networking.k8s.io/v1/namespaces/lab-alice-smith-bdd645be95/networkpolicies?"
        )
    );
    assert_eq!(
        calls[1].body,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "academy-lab-kernels", "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "academy-lab-gateway",
                           "app.kubernetes.io/part-of": "academy-lab"}},
            "spec": {
                // Not the offline (grading) pods: policies add up, and
                // those may send nothing at all.
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kernel",
                                                "app.kubernetes.io/name": "academy-lab"},
                                "matchExpressions": [{"key": "academy-lab.io/egress",
                                                      "operator": "DoesNotExist"}]},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{
                    "from": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "academy-lab"}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway",
                                                        "app.kubernetes.io/name": "academy-lab"}},
                    }],
                    "ports": [{"protocol": "TCP", "port": 9000, "endPort": 9004}],
                }],
                // Issue 13, item 10: out, only DNS (kube-dns) by default;
                // no metadata endpoint, no internal service, no gateway.
                "egress": [{
                    "to": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }],
            },
        })
    );
    // And the offline kernels' policy: the same ingress, no egress at all.
    assert_eq!(
        (calls[2].method.as_str(), calls[2].uri.as_str()),
        (
            "POST",
            "/apis/networking.k8s.io/v1/namespaces/lab-alice-smith-bdd645be95/networkpolicies?"
        )
    );
    assert_eq!(
        calls[2].body,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "academy-lab-offline-kernels", "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "academy-lab-gateway",
                           "app.kubernetes.io/part-of": "academy-lab"}},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kernel",
                                                "app.kubernetes.io/name": "academy-lab"},
                                "matchExpressions": [{"key": "academy-lab.io/egress",
                                                      "operator": "Exists"}]},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": calls[1].body["spec"]["ingress"],
                "egress": [],
            },
        })
    );
    // With Kueue, the group's LocalQueue in the user's namespace.
    assert_eq!(
        (calls[3].method.as_str(), calls[3].uri.as_str()),
        (
            "POST",
            "/apis/kueue.x-k8s.io/v1beta1/namespaces/lab-alice-smith-bdd645be95/localqueues?"
        )
    );
    assert_eq!(
        calls[3].body,
        json!({
            "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue",
            "metadata": {"name": "cohort-7", "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "academy-lab-gateway",
                           "app.kubernetes.io/part-of": "academy-lab"}},
            "spec": {"clusterQueue": "cohort-7"},
        })
    );
    assert_eq!(
        calls[4].uri,
        "/api/v1/namespaces/lab-alice-smith-bdd645be95/pods?"
    );
    assert_eq!(
        calls[4].body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
        "cohort-7"
    );
    // An ordinary kernel: the kernels' policy selects its pod.
    assert!(
        calls[4].body["metadata"]["labels"]
            .get("academy-lab.io/egress")
            .is_none()
    );

    // The next start of that user makes none of them again.
    let mut again = spec("Alice.Smith", 0, None);
    again.kernel_id = uuid::Uuid::parse_str("4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a0b").unwrap();
    let started = launch(&launcher, again);
    let name = "alice-smith-4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a0b";
    server.pod_created(ns, name).await;
    server.set_status(ns, name, running_ready("10.1.2.4"), Some("n"));
    started.await.unwrap().unwrap();
    let calls = server.calls();
    assert_eq!(calls[5].uri, format!("/api/v1/namespaces/{ns}/secrets?"));
    assert_eq!(
        calls[6].uri,
        format!("/api/v1/namespaces/{ns}/pods?"),
        "{calls:#?}"
    );
}

/// A user's notebooks volume is created with their first kernel (409 when
/// it exists already is fine) and mounted as the kernel's working folder.
#[tokio::test]
async fn a_notebooks_pvc_is_created_on_demand_and_mounted() {
    let mut c = config();
    c.notebooks_pvc = Some("notebooks-{user}".into());
    c.notebooks_storage_class = Some("fast".into());
    let (server, launcher) = launcher_with(c).await;
    let started = launch(&launcher, spec("alice", 0, None));
    server.pod_created(NS, POD).await;
    server.set_status(NS, POD, running_ready("10.42.0.3"), Some("n1"));
    started.await.unwrap().unwrap();
    let calls = server.calls();
    assert_eq!(
        (calls[0].method.as_str(), calls[0].uri.as_str()),
        (
            "POST",
            format!("/api/v1/namespaces/{NS}/persistentvolumeclaims?").as_str()
        )
    );
    assert_eq!(
        calls[0].body,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "notebooks-alice", "namespace": NS,
                "labels": {"academy-lab.io/user": "alice",
                           "app.kubernetes.io/managed-by": "academy-lab-gateway",
                           "app.kubernetes.io/part-of": "academy-lab"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "10Gi"}}},
        })
    );
    let pod = &calls[1].body;
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let work = volumes.iter().find(|v| v["name"] == "work").unwrap();
    assert_eq!(
        work["persistentVolumeClaim"]["claimName"],
        "notebooks-alice"
    );
    let mounts = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    let mount = mounts.iter().find(|m| m["name"] == "work").unwrap();
    assert_eq!(mount["mountPath"], pod::WORK_DIR);
    assert_eq!(pod["spec"]["containers"][0]["workingDir"], pod::WORK_DIR);
}

#[tokio::test]
async fn the_log_tail_asks_for_the_last_lines_within_a_byte_limit() {
    let (server, launcher) = launcher_with(config()).await;
    let s = spec("alice", 0, None);
    let id = s.kernel_id;
    let started = launch(&launcher, s);
    server.pod_created(NS, POD).await;
    server.set_status(NS, POD, running_ready("10.42.0.3"), Some("n1"));
    started.await.unwrap().unwrap();
    let text = launcher.log_tail(id, 2000).await;
    assert_eq!(text, "kernel started\nlistening on 9000\n");
    let last = server.calls().last().unwrap().clone();
    assert_eq!(
        (last.method.as_str(), last.uri.as_str()),
        (
            "GET",
            format!("/api/v1/namespaces/{NS}/pods/{POD}/log?&limitBytes=2000&tailLines=50")
                .as_str()
        )
    );
}
