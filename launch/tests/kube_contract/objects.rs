//! The objects the backend builds: extended resources, pod names, what a
//! CPU pod sees, distinct users' names (grading users' too), and the user
//! namespace's policy.

use std::collections::{BTreeMap, BTreeSet};

use launch::kube::pod;
use serde_json::{Value, json};

use crate::fake::*;
use crate::fixtures::*;

#[test]
fn the_pod_builder_follows_the_api_servers_rules_for_extended_resources() {
    let c = config();
    for (gpus, model) in [
        (0, None),
        (1, Some("H100-80GB")),
        (4, Some("H100-80GB")),
        (1, Some("1g.10gb")),
    ] {
        let mut k = pod::KernelPod {
            kernel_id: uuid::Uuid::new_v4(),
            user: "u".into(),
            group: None,
            argv: vec!["k".into()],
            env: BTreeMap::new(),
            gpus,
            gpu_model: model.map(str::to_owned),
            cpu: Some("2".into()),
            memory: Some("8Gi".into()),
            offline: false,
            work: None,
            start_in: None,
            read_only: Vec::new(),
            deadline_s: None,
        };
        let p = pod::build_pod(&c, &k);
        pod::check_extended_resources(&p).unwrap();
        let limits = p.spec.as_ref().unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap();
        let requests = p.spec.as_ref().unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .requests
            .unwrap();
        let resource = match model {
            Some("1g.10gb") => "nvidia.com/mig-1g.10gb",
            _ => "nvidia.com/gpu",
        };
        if gpus > 0 {
            assert_eq!(limits[resource].0, gpus.to_string());
        } else {
            assert!(!limits.keys().any(|k| k.starts_with("nvidia.com/")));
        }
        assert!(
            !requests.keys().any(|k| k.starts_with("nvidia.com/")),
            "GPUs in limits only"
        );
        // MIG devices select no product: the resource name says it all.
        let selector = p.spec.as_ref().unwrap().node_selector.clone();
        assert_eq!(selector.is_some(), model == Some("H100-80GB"));
        k.gpus = 0;
    }
    // And the checker rejects what the API server rejects.
    let mut p = pod::build_pod(
        &c,
        &pod::KernelPod {
            kernel_id: uuid::Uuid::new_v4(),
            user: "u".into(),
            group: None,
            argv: vec!["k".into()],
            env: BTreeMap::new(),
            gpus: 1,
            gpu_model: None,
            cpu: None,
            memory: None,
            offline: false,
            work: None,
            start_in: None,
            read_only: Vec::new(),
            deadline_s: None,
        },
    );
    let res = p.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap();
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    res.limits
        .as_mut()
        .unwrap()
        .insert("nvidia.com/gpu".into(), Quantity("0.5".into()));
    assert!(
        pod::check_extended_resources(&p)
            .unwrap_err()
            .contains("whole number")
    );
    let res = p.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap();
    res.limits
        .as_mut()
        .unwrap()
        .insert("nvidia.com/gpu".into(), Quantity("1".into()));
    res.requests
        .as_mut()
        .unwrap()
        .insert("nvidia.com/gpu".into(), Quantity("2".into()));
    assert!(
        pod::check_extended_resources(&p)
            .unwrap_err()
            .contains("must equal its limit")
    );
    let res = p.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap();
    res.limits.as_mut().unwrap().remove("nvidia.com/gpu");
    assert!(
        pod::check_extended_resources(&p)
            .unwrap_err()
            .contains("no limit")
    );
}

#[test]
fn pod_names_are_dns_labels() {
    let id = uuid::Uuid::nil();
    assert_eq!(
        pod::pod_name("Alice_Smith", id),
        format!("alice-smith-{id}")
    );
    let long = pod::pod_name(&"x".repeat(100), id);
    assert!(long.len() <= 63, "{long}");
    assert_eq!(pod::pod_name("---", id), format!("x-{id}"));
}

/// Issue 13, item 6: the CUDA base image sets `NVIDIA_VISIBLE_DEVICES=all`,
/// and where the nvidia runtime runs a container (its runtime class, or the
/// node's default runtime) that exposes every GPU of the node. A pod
/// admitted with no GPU says `void` and asks for no nvidia runtime; whatever
/// the kernelspec's env says about devices is dropped, so only the device
/// plugin decides what a GPU pod sees.
#[tokio::test]
async fn a_cpu_kernel_pod_sees_no_gpu_and_gets_no_nvidia_runtime_class() {
    let (server, launcher) = launcher_with(config()).await;
    let mut s = spec("alice", 0, None);
    // A kernelspec (or a user's env) trying to widen its devices.
    s.env.insert("NVIDIA_VISIBLE_DEVICES".into(), "all".into());
    s.env
        .insert("NVIDIA_DRIVER_CAPABILITIES".into(), "all".into());
    let started = launch(&launcher, s);
    server.pod_created(NS, POD).await;
    server.set_status(NS, POD, running_ready("10.42.0.9"), Some("gpu-node-1"));
    started.await.unwrap().unwrap();
    let body = &server.calls()[0].body;
    assert_eq!(body["kind"], "Pod");
    assert!(
        body["spec"].get("runtimeClassName").is_none(),
        "a CPU-only pod must not run under the nvidia runtime class: {}",
        body["spec"]["runtimeClassName"]
    );
    let env = body["spec"]["containers"][0]["env"].as_array().unwrap();
    let nvidia: Vec<&Value> = env
        .iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("NVIDIA_"))
        .collect();
    assert_eq!(
        nvidia,
        [&json!({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})],
        "a CPU-only pod's env"
    );

    // A GPU pod keeps the runtime class and carries no device env of its
    // own: the device plugin's allocation is the only one.
    let mut k = pod::KernelPod {
        kernel_id: uuid::Uuid::new_v4(),
        user: "alice".into(),
        group: None,
        argv: vec!["k".into()],
        env: BTreeMap::from([
            ("NVIDIA_VISIBLE_DEVICES".into(), "all".into()),
            ("NVIDIA_MIG_CONFIG_DEVICES".into(), "all".into()),
            ("CUDA_VISIBLE_DEVICES".into(), "0,1,2,3".into()),
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
    let gpu = serde_json::to_value(pod::build_pod(&config(), &k)).unwrap();
    assert_eq!(gpu["spec"]["runtimeClassName"], "nvidia");
    let env = gpu["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(
        !env.iter().any(|e| {
            let n = e["name"].as_str().unwrap();
            n.starts_with("NVIDIA_") || n == "CUDA_VISIBLE_DEVICES"
        }),
        "{env:?}"
    );
    k.gpus = 0;
    k.gpu_model = None;
    let cpu = serde_json::to_value(pod::build_pod(&config(), &k)).unwrap();
    assert!(cpu["spec"].get("runtimeClassName").is_none());
}

/// Issue 13, item 9: user names allowed by the gateway
/// (`scheduler::quota::validate_name`: 1 to 64 of `[A-Za-z0-9._-]`, not
/// starting with a dot) that differ must never share a namespace or a
/// notebooks volume, however they lower-case or sanitise.
#[test]
fn distinct_users_never_share_a_namespace_or_a_notebooks_volume() {
    let mut c = config();
    c.namespace_per_user = Some("lab-{user}".into());
    c.notebooks_pvc = Some("notebooks-{user}".into());
    let users = [
        "ana.lee", "ana_lee", "Ana-Lee", "ana-lee", "ana-lee-", "ana--lee",
    ];
    let namespaces: BTreeSet<String> = users.iter().map(|u| pod::namespace_for(&c, u)).collect();
    let volumes: BTreeSet<String> = users
        .iter()
        .map(|u| pod::notebooks_pvc_name(&c, u).unwrap())
        .collect();
    assert_eq!(namespaces.len(), users.len(), "{namespaces:?}");
    assert_eq!(volumes.len(), users.len(), "{volumes:?}");
    // A name that is already a DNS label keeps its name: existing volumes
    // of plain lower-case users are found again after an upgrade.
    assert_eq!(pod::namespace_for(&c, "ana-lee"), "lab-ana-lee");
    assert_eq!(
        pod::notebooks_pvc_name(&c, "alice").unwrap(),
        "notebooks-alice"
    );
}

/// Issue 15: grading kernels belong to `.grading-N` and `.validate-UUID`
/// (lab-gateway's `coursework::run`), names no person can have
/// (`validate_name` refuses a leading dot). Such a name is no DNS label, so
/// it gets its sanitised form and a hash: valid names, distinct from each
/// other's and from every person's, including a person named as one of
/// them is without its dot, or as its hashed form.
#[test]
fn grading_users_get_valid_names_no_person_and_no_other_grading_shares() {
    let mut c = config();
    c.namespace_per_user = Some("lab-{user}".into());
    c.notebooks_pvc = Some("notebooks-{user}".into());
    let internal = [
        ".grading-1".to_owned(),
        ".grading-12".to_owned(),
        format!(".grading-{}", i64::MAX),
        format!(".validate-{}", uuid::Uuid::nil().simple()),
        format!(".validate-{}", uuid::Uuid::max().simple()),
    ];
    for u in &internal {
        assert!(scheduler::quota::validate_name(u).is_err(), "{u}");
    }
    let hashed = pod::namespace_for(&c, ".grading-1");
    assert!(hashed.starts_with("lab-grading-1-"), "{hashed}");
    assert_eq!(hashed.len(), "lab-grading-1-".len() + 10, "{hashed}");
    let persons = [
        "grading-1".to_owned(),
        "grading-12".to_owned(),
        "Grading-1".to_owned(),
        "grading_1".to_owned(),
        // A person named as a grading user's hashed form is hashed too.
        hashed.trim_start_matches("lab-").to_owned(),
        format!("validate-{}", uuid::Uuid::nil().simple()),
    ];
    for u in &persons {
        assert!(scheduler::quota::validate_name(u).is_ok(), "{u}");
    }
    let users: BTreeSet<String> = internal.iter().chain(&persons).cloned().collect();
    assert_distinct_valid_names(&c, &users);
}

/// Every user of `users` gets a namespace, a notebooks volume and pod
/// names that are DNS-1123 labels, the same each time, and no two users
/// share a namespace or a volume (pod names differ by the kernel id).
fn assert_distinct_valid_names(c: &launch::kube::KubeConfig, users: &BTreeSet<String>) {
    let mut namespaces = BTreeMap::new();
    let mut volumes = BTreeMap::new();
    for u in users {
        let ns = pod::namespace_for(c, u);
        assert_dns_label(&ns);
        assert_eq!(pod::namespace_for(c, u), ns, "stable");
        if let Some(other) = namespaces.insert(ns.clone(), u) {
            panic!("{other:?} and {u:?} share the namespace {ns}");
        }
        let pvc = pod::notebooks_pvc_name(c, u).unwrap();
        assert_dns_label(&pvc);
        if let Some(other) = volumes.insert(pvc.clone(), u) {
            panic!("{other:?} and {u:?} share the volume {pvc}");
        }
        assert_dns_label(&pod::pod_name(u, uuid::Uuid::max()));
    }
}

fn assert_dns_label(name: &str) {
    assert!(
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            && !name.starts_with('-')
            && !name.ends_with('-'),
        "{name:?} is not a DNS-1123 label"
    );
}

mod user_names {
    use super::*;
    use proptest::prelude::*;

    /// Names the gateway accepts, from a small alphabet (so that many
    /// differ only by case or punctuation) and at every length up to the
    /// limit (so that truncation is exercised).
    fn user_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[aA0_-][aA0._-]{0,9}",
            "[a-cA-C][a-cA-C._-]{40,63}",
            "[a-z0-9][a-z0-9-]{0,63}",
        ]
    }

    /// The gateway's own users: grading and validation kernels' owners.
    fn internal_name() -> impl Strategy<Value = String> {
        prop_oneof!["\\.grading-[0-9]{1,19}", "\\.validate-[0-9a-f]{32}"]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn grading_users_and_persons_get_distinct_valid_names(
            users in proptest::collection::btree_set(
                prop_oneof![user_name(), internal_name()],
                2..40,
            )
        ) {
            let mut c = config();
            c.namespace_per_user = Some("lab-{user}".into());
            c.notebooks_pvc = Some("notebooks-{user}".into());
            assert_distinct_valid_names(&c, &users);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn distinct_users_get_distinct_valid_names(
            users in proptest::collection::btree_set(user_name(), 2..40)
        ) {
            let mut c = config();
            c.namespace_per_user = Some("lab-{user}".into());
            c.notebooks_pvc = Some("notebooks-{user}".into());
            for u in &users {
                prop_assert!(scheduler::quota::validate_name(u).is_ok(), "{u:?}");
            }
            let mut namespaces = BTreeMap::new();
            let mut volumes = BTreeMap::new();
            for u in &users {
                let ns = pod::namespace_for(&c, u);
                assert_dns_label(&ns);
                if let Some(other) = namespaces.insert(ns.clone(), u.clone()) {
                    prop_assert!(false, "{other:?} and {u:?} share the namespace {ns}");
                }
                let pvc = pod::notebooks_pvc_name(&c, u).unwrap();
                assert_dns_label(&pvc);
                if let Some(other) = volumes.insert(pvc.clone(), u.clone()) {
                    prop_assert!(false, "{other:?} and {u:?} share the volume {pvc}");
                }
                // Stable: the same user always gets the same names.
                prop_assert_eq!(pod::namespace_for(&c, u), ns);
            }
        }
    }
}

/// Issue 13, item 10: a user namespace made by an older gateway (its
/// policy ingress-only) gets the egress policy by a merge patch, with the
/// configured mirror and, however broad the mirror, never the metadata
/// endpoint.
#[tokio::test]
async fn an_older_user_namespace_policy_is_patched_to_deny_egress_but_dns_and_mirrors() {
    let mut c = config();
    c.namespace_per_user = Some("lab-{user}".into());
    c.egress = vec![
        launch::kube::egress::EgressRule::new("0.0.0.0/0".parse().unwrap(), vec![443]).unwrap(),
    ];
    let (server, launcher) = launcher_with(c).await;
    server.override_next(
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/lab-alice/networkpolicies",
        409,
        status(
            409,
            "AlreadyExists",
            "networkpolicies \"academy-lab-kernels\" already exists",
            Value::Null,
        ),
    );
    let started = launch(&launcher, spec("alice", 0, None));
    server.pod_created("lab-alice", POD).await;
    server.set_status("lab-alice", POD, running_ready("10.1.2.3"), Some("n"));
    started.await.unwrap().unwrap();
    let calls = server.calls();
    let patch = calls
        .iter()
        .find(|s| s.method == "PATCH")
        .unwrap_or_else(|| panic!("no PATCH of the existing policy: {calls:#?}"));
    assert_eq!(
        patch.uri,
        "/apis/networking.k8s.io/v1/namespaces/lab-alice/networkpolicies/academy-lab-kernels?"
    );
    assert_eq!(
        patch.body["spec"]["policyTypes"],
        json!(["Ingress", "Egress"])
    );
    assert_eq!(
        patch.body["spec"]["egress"][1],
        json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
               "ports": [{"protocol": "TCP", "port": 443}]})
    );
    assert_eq!(patch.body["spec"]["egress"].as_array().unwrap().len(), 2);
}
