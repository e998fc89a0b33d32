//! Offline kernels (grading, `LaunchSpec::offline`): their pod carries
//! `academy-lab.io/egress: none`, the kernels' NetworkPolicy does not
//! select it and the offline one does, which allows no egress at all (not
//! even DNS, a channel out for hidden tests). NetworkPolicies add up, so
//! both must be in place, and the kernels' one must exclude the label,
//! before such a pod exists.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use launch::kube::pod;
use serde_json::{Value, json};

use crate::fake::*;
use crate::fixtures::*;

const GRADER: &str = ".grading-7";
const GRADER_POD: &str = "grading-7-4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a09";

fn per_user() -> launch::kube::KubeConfig {
    let mut c = config();
    c.namespace_per_user = Some("lab-{user}".into());
    c
}

fn offline_spec() -> launch::LaunchSpec {
    let mut s = spec(GRADER, 0, None);
    s.offline = true;
    s.group = Some("grading".into());
    s
}

/// The names of the policies among `calls` that select a pod labelled so.
fn selecting(calls: &[Seen], labels: &Value) -> Vec<String> {
    let labels = serde_json::from_value(labels.clone()).unwrap();
    calls
        .iter()
        .filter(|c| c.uri.contains("/networkpolicies"))
        .map(|c| serde_json::from_value::<NetworkPolicy>(c.body.clone()).unwrap())
        .filter(|p| {
            pod::selects(
                p.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(),
                &labels,
            )
        })
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

#[tokio::test]
async fn an_offline_kernels_pod_is_labelled_and_only_the_offline_policy_of_its_namespace_selects_it()
 {
    let c = per_user();
    let ns = pod::namespace_for(&c, GRADER);
    let (server, launcher) = launcher_with(c).await;
    let started = launch(&launcher, offline_spec());
    server.pod_created(&ns, GRADER_POD).await;
    server.set_status(&ns, GRADER_POD, running_ready("10.1.2.9"), Some("n"));
    started.await.unwrap().unwrap();

    let calls = server.calls();
    let what: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.uri.as_str()))
        .collect();
    let policies = format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies?");
    let pods = format!("/api/v1/namespaces/{ns}/pods?");
    // Both policies before the pod.
    assert_eq!(
        what[..5],
        [
            ("POST", "/api/v1/namespaces?"),
            ("POST", policies.as_str()),
            ("POST", policies.as_str()),
            (
                "POST",
                format!("/apis/kueue.x-k8s.io/v1beta1/namespaces/{ns}/localqueues?").as_str()
            ),
            ("POST", pods.as_str()),
        ],
        "{calls:#?}"
    );
    let labels = &calls[4].body["metadata"]["labels"];
    assert_eq!(labels["academy-lab.io/egress"], "none");
    assert_eq!(
        calls[1].body["spec"]["podSelector"]["matchExpressions"],
        json!([{"key": "academy-lab.io/egress", "operator": "DoesNotExist"}])
    );
    let offline = &calls[2].body;
    assert_eq!(offline["metadata"]["name"], "academy-lab-offline-kernels");
    assert_eq!(
        offline["spec"]["podSelector"],
        json!({"matchLabels": {"app.kubernetes.io/component": "kernel",
                               "app.kubernetes.io/name": "academy-lab"},
               "matchExpressions": [{"key": "academy-lab.io/egress", "operator": "Exists"}]})
    );
    assert_eq!(offline["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(offline["spec"]["egress"], json!([]));
    assert_eq!(offline["spec"]["ingress"], calls[1].body["spec"]["ingress"]);
    assert_eq!(
        selecting(&calls, labels),
        ["academy-lab-offline-kernels"],
        "an offline pod must get none of the kernels' policy's egress"
    );

    // An ordinary kernel of another user: the kernels' policy alone.
    let alice_ns = pod::namespace_for(&per_user(), "alice");
    let started = launch(&launcher, spec("alice", 0, None));
    server.pod_created(&alice_ns, POD).await;
    server.set_status(&alice_ns, POD, running_ready("10.1.2.10"), Some("n"));
    started.await.unwrap().unwrap();
    let calls = server.calls();
    let alice_pod = calls
        .iter()
        .find(|c| c.method == "POST" && c.uri == format!("/api/v1/namespaces/{alice_ns}/pods?"))
        .unwrap();
    let labels = &alice_pod.body["metadata"]["labels"];
    assert!(labels.get("academy-lab.io/egress").is_none(), "{labels}");
    let alice_policies: Vec<Seen> = calls
        .iter()
        .filter(|c| {
            c.uri
                .contains(&format!("/namespaces/{alice_ns}/networkpolicies"))
        })
        .cloned()
        .collect();
    assert_eq!(alice_policies.len(), 2);
    assert_eq!(selecting(&alice_policies, labels), ["academy-lab-kernels"]);
}

/// In the shared namespace the policies are k8s/base's (checked against
/// the builders by lab-gateway/tests/manifests.rs): the backend labels the
/// pod and makes nothing else.
#[tokio::test]
async fn an_offline_kernel_in_the_shared_namespace_is_labelled() {
    let (server, launcher) = launcher_with(config()).await;
    let started = launch(&launcher, offline_spec());
    server.pod_created(NS, GRADER_POD).await;
    server.set_status(NS, GRADER_POD, running_ready("10.1.2.11"), Some("n"));
    started.await.unwrap().unwrap();
    let calls = server.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0].uri, format!("/api/v1/namespaces/{NS}/pods?"));
    assert_eq!(
        calls[0].body["metadata"]["labels"]["academy-lab.io/egress"],
        "none"
    );
    assert_eq!(calls[1].uri, format!("/api/v1/namespaces/{NS}/secrets?"));
}

/// A pod labelled offline in a namespace without the offline policy would
/// be selected by no policy at all, and so may send anywhere: no pod is
/// created until both policies are in place, and the next start makes
/// sure of them again.
#[tokio::test]
async fn no_pod_is_created_until_both_policies_are_in_place() {
    let c = per_user();
    let ns = pod::namespace_for(&c, GRADER);
    let (server, launcher) = launcher_with(c).await;
    server.override_next_named(
        "POST",
        &format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
        "academy-lab-offline-kernels",
        403,
        status(
            403,
            "Forbidden",
            "networkpolicies is forbidden: denied by a test",
            Value::Null,
        ),
    );
    let failure = kube_failure(launch(&launcher, offline_spec()).await.unwrap());
    assert!(failure.to_string().contains("forbidden"), "{failure}");
    let calls = server.calls();
    assert!(
        !calls.iter().any(|c| c.uri.contains("/pods")),
        "a pod was created without its policy: {calls:#?}"
    );

    let started = launch(&launcher, offline_spec());
    server.pod_created(&ns, GRADER_POD).await;
    server.set_status(&ns, GRADER_POD, running_ready("10.1.2.12"), Some("n"));
    started.await.unwrap().unwrap();
    let calls = server.calls();
    let pod_at = calls.iter().position(|c| c.uri.contains("/pods")).unwrap();
    let offline_made = calls[..pod_at].iter().any(|c| {
        c.method == "POST"
            && c.uri.contains("/networkpolicies")
            && c.body["metadata"]["name"] == "academy-lab-offline-kernels"
    });
    assert!(offline_made, "{calls:#?}");
}

/// A namespace made by an older gateway: its kernels' policy, which
/// selected every kernel pod, is patched to leave offline pods out, and the
/// offline policy is patched to its one form (no egress) if it was there.
#[tokio::test]
async fn an_older_namespaces_policies_are_patched_to_split_the_kernel_pods() {
    let c = per_user();
    let ns = pod::namespace_for(&c, GRADER);
    let (server, launcher) = launcher_with(c).await;
    for name in ["academy-lab-kernels", "academy-lab-offline-kernels"] {
        server.override_next_named(
            "POST",
            &format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
            name,
            409,
            status(
                409,
                "AlreadyExists",
                &format!("networkpolicies \"{name}\" already exists"),
                Value::Null,
            ),
        );
    }
    let started = launch(&launcher, offline_spec());
    server.pod_created(&ns, GRADER_POD).await;
    server.set_status(&ns, GRADER_POD, running_ready("10.1.2.13"), Some("n"));
    started.await.unwrap().unwrap();
    let calls = server.calls();
    let patches: Vec<&Seen> = calls.iter().filter(|c| c.method == "PATCH").collect();
    assert_eq!(patches.len(), 2, "{calls:#?}");
    assert_eq!(
        patches[0].uri,
        format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/academy-lab-kernels?")
    );
    assert_eq!(
        patches[0].body["spec"]["podSelector"]["matchExpressions"],
        json!([{"key": "academy-lab.io/egress", "operator": "DoesNotExist"}])
    );
    assert_eq!(
        patches[1].uri,
        format!(
            "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/academy-lab-offline-kernels?"
        )
    );
    assert_eq!(patches[1].body["spec"]["egress"], json!([]));
    let pod_at = calls.iter().position(|c| c.uri.contains("/pods")).unwrap();
    let patched_at = calls.iter().rposition(|c| c.method == "PATCH").unwrap();
    assert!(patched_at < pod_at, "{calls:#?}");
}
