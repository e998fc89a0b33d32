//! The RBAC manifests grant exactly the verbs the backend calls, derived
//! from the requests it sent.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use launch::kube::{KubeConfig, KubeLauncher};
use launch::{KernelLocator, KernelSignal, Launcher};
use serde_json::{Value, json};

use crate::fake::*;
use crate::fixtures::*;

/// Maps a recorded request to the RBAC (resource, verb) it needs.
fn rbac_of(s: &Seen) -> (String, String, String) {
    let path = s.uri.split('?').next().unwrap();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]], /api/v1/RESOURCE, or
    // /apis/GROUP/VERSION/namespaces/NS/RESOURCE[/NAME]
    let (group, resource, named) = match parts.as_slice() {
        ["api", "v1", "namespaces"] => ("", "namespaces".to_owned(), false),
        ["api", "v1", "namespaces", _, r] => ("", (*r).to_owned(), false),
        ["api", "v1", "namespaces", _, r, _] => ("", (*r).to_owned(), true),
        ["api", "v1", "namespaces", _, r, _, sub] => ("", format!("{r}/{sub}"), true),
        ["api", "v1", r] => ("", (*r).to_owned(), false),
        ["apis", g, _, "namespaces", _, r] => (*g, (*r).to_owned(), false),
        ["apis", g, _, "namespaces", _, r, _] => (*g, (*r).to_owned(), true),
        other => panic!("unexpected path {other:?}"),
    };
    let verb = match (s.method.as_str(), named) {
        ("GET", false) if s.uri.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        (m, _) => panic!("unexpected method {m}"),
    };
    (group.to_owned(), resource, verb.to_owned())
}

/// The (API group, resource, verb) triples the rules of `kind` objects in
/// `file` grant.
fn granted(file: &str, kind: &str) -> BTreeSet<(String, String, String)> {
    let yaml = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap();
    let mut granted = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != kind {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        granted.insert((
                            g.as_str().unwrap().to_owned(),
                            r.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    granted
}

/// Every call the backend makes in a mode: adopt (with the watch not yet
/// synced, so liveness asks the server), launch, log, kill.
async fn every_call(
    mut config: KubeConfig,
    ns: &str,
    user: &str,
    pod_name: &str,
) -> BTreeSet<(String, String, String)> {
    // Every feature on, so the Role covers whatever lab.toml turns on.
    config.notebooks_pvc = Some("notebooks-{user}".into());
    let (server, client) = ApiServer::start();
    server.insert_pod(
        ns,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "old", "namespace": ns, "resourceVersion": "3", "uid": "old",
                            "labels": {"app.kubernetes.io/managed-by": "academy-lab-gateway",
                                       "academy-lab.io/kernel-id": uuid::Uuid::new_v4().to_string()}},
               "spec": {"containers": [{"name": "kernel", "image": "k"}]}}),
    );
    if config.namespace_per_user.is_some() {
        // A namespace an older gateway made: its policy is brought up to date.
        server.override_next(
            "POST",
            &format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
            409,
            status(
                409,
                "AlreadyExists",
                "networkpolicies \"academy-lab-kernels\" already exists",
                Value::Null,
            ),
        );
    }
    let launcher = Arc::new(KubeLauncher::new(client, config));
    let _ = launcher
        .is_alive(&KernelLocator::Pod {
            namespace: ns.into(),
            name: "old".into(),
        })
        .await;
    launcher.adopt(&HashSet::new()).await.unwrap();
    let s = spec(user, 1, Some("H100-80GB"));
    let id = s.kernel_id;
    let started = launch(&launcher, s);
    server.pod_created(ns, pod_name).await;
    server.set_status(ns, pod_name, running_ready("10.42.0.3"), Some("n1"));
    let launched = started.await.unwrap().unwrap();
    launcher.log_tail(id, 100).await;
    launcher
        .signal(&launched.locator, KernelSignal::Kill)
        .await
        .unwrap();
    server.seen().iter().map(rbac_of).collect()
}

#[tokio::test]
async fn the_cluster_role_for_per_user_namespaces_grants_exactly_what_that_mode_calls() {
    let mut c = config();
    c.namespace_per_user = Some("lab-{user}".into());
    let used = every_call(c, "lab-alice", "alice", POD).await;
    assert_eq!(
        granted(
            "../k8s/components/per-user-namespaces/clusterrole.yaml",
            "ClusterRole"
        ),
        used
    );
}

#[tokio::test]
async fn the_role_in_k8s_base_grants_exactly_the_verbs_the_backend_calls() {
    let used = every_call(config(), NS, "alice", POD).await;
    assert_eq!(
        granted("../k8s/base/rbac.yaml", "Role"),
        used,
        "k8s/base/rbac.yaml must grant exactly what the backend calls"
    );
}
