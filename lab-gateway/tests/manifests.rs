//! The kustomize manifests in `k8s/`, rendered by `kubectl kustomize` as a
//! user would, read back into k8s-openapi types with unknown fields denied,
//! and checked against the code that depends on them: the gateway reads the
//! ConfigMap's lab.toml, the NetworkPolicies select the labels the backend
//! puts on kernel pods (each pod, offline or not, by exactly one), the
//! Deployment runs as the restricted standard asks.
//! (The outside schema check is tests/test_k8s.py, with kubernetes-validate.)

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use launch::kube::pod;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize DIR`, one JSON value per object. kubectl is part of
/// this project's machine image: without it this fails rather than passing
/// unchecked, unless LAB_SKIP_KUBECTL=1 says to skip on purpose (`None`).
fn render_dir(dir: &Path) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("LAB_SKIP_KUBECTL").as_deref() == Ok("1") {
                eprintln!("SKIPPED (LAB_SKIP_KUBECTL=1): the overlays are not rendered");
                return None;
            }
            panic!(
                "kubectl is not installed, so the overlays cannot be rendered (install it, or set LAB_SKIP_KUBECTL=1)"
            );
        }
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .collect(),
    )
}

fn render(overlay: &str) -> Option<Vec<Value>> {
    render_dir(&repo().join("k8s/overlays").join(overlay))
}

/// Parses `v` as `T`, failing on any field k8s-openapi does not know.
fn strict<T: DeserializeOwned>(v: &Value) -> T {
    let mut unknown = Vec::new();
    let parsed: T = serde_ignored::deserialize(v.clone(), |path| unknown.push(path.to_string()))
        .unwrap_or_else(|e| panic!("{} {}: {e}", v["kind"], v["metadata"]["name"]));
    assert!(
        unknown.is_empty(),
        "{} {} has fields Kubernetes does not know: {unknown:?}",
        v["kind"],
        v["metadata"]["name"]
    );
    parsed
}

fn check_overlay(overlay: &str) {
    let Some(objects) = render(overlay) else {
        return;
    };
    let mut kinds = Vec::new();
    let mut config = None;
    let mut deployment = None;
    let mut policies = Vec::new();
    for v in &objects {
        let kind = v["kind"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "Namespace" => {
                strict::<Namespace>(v);
            }
            "ServiceAccount" => {
                strict::<ServiceAccount>(v);
            }
            "Role" => {
                strict::<Role>(v);
            }
            "RoleBinding" => {
                strict::<RoleBinding>(v);
            }
            "ConfigMap" => config = Some(strict::<ConfigMap>(v)),
            "PersistentVolumeClaim" => {
                strict::<PersistentVolumeClaim>(v);
            }
            "Deployment" => deployment = Some(strict::<Deployment>(v)),
            "Service" => {
                strict::<Service>(v);
            }
            "NetworkPolicy" => policies.push(strict::<NetworkPolicy>(v)),
            other => panic!("{overlay}: unexpected kind {other}"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ],
        "{overlay}"
    );

    // The gateway reads the ConfigMap's lab.toml: every key is one it knows.
    let config = config.unwrap();
    let toml = &config.data.as_ref().unwrap()["lab.toml"];
    let file: lab_gateway::config::FileConfig =
        toml::from_str(toml).unwrap_or_else(|e| panic!("{overlay}: lab.toml: {e}"));
    assert_eq!(file.backend.as_deref(), Some("kubernetes"));
    let kube = file.kubernetes.expect("a [kubernetes] table");
    let gpus = file.gpus.expect("the GPUs the cluster holds");
    scheduler::Cluster::parse(&gpus).unwrap_or_else(|e| panic!("{overlay}: gpus: {e}"));

    // The gateway runs restricted, with probes on routes that exist.
    let d = deployment.unwrap();
    let gateway_labels = d.spec_template_labels();
    let spec = d.spec.unwrap().template.spec.unwrap();
    let pod_sc = spec.security_context.unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &spec.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    let ready = c.readiness_probe.clone().unwrap().http_get.unwrap().path;
    let live = c.liveness_probe.clone().unwrap().http_get.unwrap().path;
    assert_eq!(
        (ready.as_deref(), live.as_deref()),
        (Some("/readyz"), Some("/healthz"))
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("academy-lab-gateway")
    );

    // The gateway's pods carry the labels the backend's per-user
    // NetworkPolicies let in.
    for (k, v) in launch::kube::pod::gateway_labels() {
        assert_eq!(
            gateway_labels.get(&k),
            Some(&v),
            "{overlay}: the gateway lacks {k}={v}"
        );
    }

    // The kernel policy selects the pods the backend makes, and lets in
    // only the gateway, on the kernel's ports.
    let kernel_policy = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod::USER_NETWORK_POLICY))
        .expect("a NetworkPolicy for kernel pods");
    let ps = kernel_policy.spec.as_ref().unwrap();
    assert_eq!(
        ps.pod_selector.as_ref(),
        Some(&pod::kernel_pod_selector(false)),
        "{overlay}: the kernel policy must select what the backend's per-user one does"
    );
    let kernel_pod = |offline: bool| {
        pod::build_pod(
            &kube,
            &pod::KernelPod {
                kernel_id: uuid::Uuid::new_v4(),
                user: if offline { ".grading-1" } else { "alice" }.into(),
                group: None,
                argv: vec!["k".into()],
                env: Default::default(),
                gpus: 0,
                gpu_model: None,
                cpu: None,
                memory: None,
                offline,
                work: None,
                start_in: None,
                read_only: Vec::new(),
                deadline_s: None,
            },
        )
        .metadata
        .labels
        .unwrap()
    };
    // Issue 15: NetworkPolicies add up, so each kernel pod is selected by
    // exactly one policy of the overlay: an ordinary one by the kernels',
    // an offline (grading) one by the offline kernels', which allows no
    // egress (DNS alone could carry hidden tests out).
    for (offline, want) in [
        (false, pod::USER_NETWORK_POLICY),
        (true, pod::OFFLINE_NETWORK_POLICY),
    ] {
        let labels = kernel_pod(offline);
        let selecting: Vec<&str> = policies
            .iter()
            .filter(|p| {
                pod::selects(
                    p.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(),
                    &labels,
                )
            })
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            selecting,
            [want],
            "{overlay}: the policies selecting a kernel pod (offline: {offline})"
        );
    }
    let offline_policy = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod::OFFLINE_NETWORK_POLICY))
        .expect("a NetworkPolicy for offline kernel pods");
    let os = offline_policy.spec.as_ref().unwrap();
    assert_eq!(
        os.pod_selector.as_ref(),
        Some(&pod::kernel_pod_selector(true)),
        "{overlay}: the offline policy must select what the backend's per-user one does"
    );
    assert_eq!(
        os.policy_types.as_deref(),
        Some(&["Ingress".to_owned(), "Egress".to_owned()][..]),
        "{overlay}: without Egress in policyTypes the offline policy denies no egress"
    );
    assert_eq!(
        os.egress,
        pod::build_offline_network_policy("ns", "gw")
            .spec
            .unwrap()
            .egress,
        "{overlay}: an offline kernel must have no egress rule at all"
    );
    assert_eq!(
        os.ingress, ps.ingress,
        "{overlay}: offline kernels are reached as the others are"
    );
    let ingress = &ps.ingress.as_ref().unwrap()[0];
    let from = ingress.from.as_ref().unwrap()[0]
        .pod_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap();
    for (k, v) in &from {
        assert_eq!(
            gateway_labels.get(k),
            Some(v),
            "{overlay}: the gateway lacks {k}={v}"
        );
    }
    // Issue 13, item 10: kernel pods may send only what the backend's own
    // per-user policy allows: DNS to kube-dns and the mirrors of lab.toml.
    assert_eq!(
        ps.policy_types.as_deref(),
        Some(&["Ingress".to_owned(), "Egress".to_owned()][..]),
        "{overlay}: the kernel policy must restrict egress too"
    );
    assert_eq!(
        serde_json::to_value(&ps.egress).unwrap(),
        serde_json::to_value(
            pod::build_network_policy("ns", "gw", &kube)
                .spec
                .unwrap()
                .egress
        )
        .unwrap(),
        "{overlay}: the kernel policy's egress differs from what lab.toml's [kubernetes] egress makes"
    );
    assert_no_metadata_endpoint(overlay, ps.egress.as_deref().unwrap_or_default());
    let port = &ingress.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.port.clone(), port.end_port),
        (
            Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i32::from(
                    launch::kube::pod::KERNEL_PORTS[0]
                ))
            ),
            Some(i32::from(launch::kube::pod::KERNEL_PORTS[4]))
        )
    );
}

/// No egress rule reaches the cloud metadata endpoint: every IP block that
/// holds 169.254.169.254 excepts it.
fn assert_no_metadata_endpoint(
    overlay: &str,
    egress: &[k8s_openapi::api::networking::v1::NetworkPolicyEgressRule],
) {
    for rule in egress {
        for peer in rule.to.iter().flatten() {
            let Some(block) = &peer.ip_block else {
                assert!(
                    peer.namespace_selector.is_some() || peer.pod_selector.is_some(),
                    "{overlay}: an egress peer with no selector allows everything"
                );
                continue;
            };
            let cidr: launch::kube::egress::Cidr = block.cidr.parse().unwrap();
            if cidr.contains(&launch::kube::egress::METADATA_V4) {
                assert!(
                    block
                        .except
                        .iter()
                        .flatten()
                        .any(|e| e == "169.254.169.254/32"),
                    "{overlay}: {} reaches the metadata endpoint",
                    block.cidr
                );
            }
        }
    }
}

trait TemplateLabels {
    fn spec_template_labels(&self) -> std::collections::BTreeMap<String, String>;
}

impl TemplateLabels for Deployment {
    fn spec_template_labels(&self) -> std::collections::BTreeMap<String, String> {
        self.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }
}

#[test]
fn the_dev_overlay_renders_to_valid_objects_the_code_agrees_with() {
    check_overlay("dev");
}

#[test]
fn the_production_overlay_renders_to_valid_objects_the_code_agrees_with() {
    check_overlay("production");
}

/// The component as README says to use it, added to an overlay and
/// rendered by kustomize (so a broken kustomization.yaml fails here).
#[test]
fn an_overlay_with_the_per_user_namespaces_component_renders_to_valid_objects() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("per-user-overlay");
    std::fs::create_dir_all(&dir).unwrap();
    // kustomize takes relative paths only.
    let up = dir
        .canonicalize()
        .unwrap()
        .components()
        .count()
        .saturating_sub(1);
    let root = format!(
        "{}{}",
        "../".repeat(up),
        repo()
            .canonicalize()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('/')
    );
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [{root}/k8s/overlays/production]\n\
             components: [{root}/k8s/components/per-user-namespaces]\n"
        ),
    )
    .unwrap();
    let Some(objects) = render_dir(&dir) else {
        return;
    };
    // The ClusterRole, its binding, two admission policies with theirs.
    assert_eq!(objects.len(), 17);
    let role: ClusterRole = strict(
        objects
            .iter()
            .find(|v| v["kind"] == "ClusterRole")
            .expect("the component's ClusterRole"),
    );
    let binding: ClusterRoleBinding = strict(
        objects
            .iter()
            .find(|v| v["kind"] == "ClusterRoleBinding")
            .expect("its binding"),
    );
    assert_eq!(binding.role_ref.name, role.metadata.name.clone().unwrap());

    // Issue 13, item 10: every write the cluster-wide role grants (but
    // creating a namespace) is confined by admission to the namespaces the
    // gateway created, which are the ones build_namespace labels.
    let policies: Vec<ValidatingAdmissionPolicy> = objects
        .iter()
        .filter(|v| v["kind"] == "ValidatingAdmissionPolicy")
        .map(strict)
        .collect();
    let bindings: Vec<ValidatingAdmissionPolicyBinding> = objects
        .iter()
        .filter(|v| v["kind"] == "ValidatingAdmissionPolicyBinding")
        .map(strict)
        .collect();
    let confine = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("academy-lab-gateway-own-namespaces"))
        .expect("an admission policy confining the gateway's writes")
        .spec
        .clone()
        .unwrap();
    let sa = format!(
        "system:serviceaccount:{}:{}",
        binding.subjects.as_ref().unwrap()[0]
            .namespace
            .as_deref()
            .unwrap(),
        binding.subjects.as_ref().unwrap()[0].name
    );
    assert_eq!(
        confine.match_conditions.unwrap()[0].expression,
        format!("request.userInfo.username == '{sa}'")
    );
    let constraints = confine.match_constraints.unwrap();
    let outside = constraints
        .namespace_selector
        .unwrap()
        .match_expressions
        .unwrap();
    let ours = launch::kube::pod::build_namespace("lab-x", "x")
        .metadata
        .labels
        .unwrap();
    assert_eq!(outside.len(), 1);
    assert_eq!(outside[0].operator, "NotIn");
    assert_eq!(
        Some(&outside[0].values.clone().unwrap()[0]),
        ours.get(&outside[0].key),
        "the policy must exempt exactly the namespaces build_namespace labels"
    );
    let mut covered = std::collections::BTreeSet::new();
    for rule in constraints.resource_rules.unwrap() {
        let ops = rule.operations.unwrap();
        for op in ["CREATE", "UPDATE", "DELETE"] {
            assert!(ops.iter().any(|o| o == op), "{op} not confined");
        }
        for g in rule.api_groups.unwrap() {
            for r in rule.resources.clone().unwrap() {
                covered.insert((g.clone(), r));
            }
        }
    }
    for rule in role.rules.unwrap() {
        let writes = rule
            .verbs
            .iter()
            .any(|v| !matches!(v.as_str(), "get" | "list" | "watch"));
        for g in rule.api_groups.unwrap() {
            for r in rule.resources.clone().unwrap() {
                if writes && !(g.is_empty() && r == "namespaces") {
                    assert!(
                        covered.contains(&(g.clone(), r.clone())),
                        "the ClusterRole writes {g}/{r} in any namespace"
                    );
                }
            }
        }
    }
    let namespaces = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("academy-lab-gateway-restricted-namespaces"))
        .expect("an admission policy on the namespaces the gateway creates");
    let check = &namespaces
        .spec
        .as_ref()
        .unwrap()
        .validations
        .as_ref()
        .unwrap()[0]
        .expression;
    for (k, v) in &ours {
        if k == "app.kubernetes.io/managed-by" || k == "pod-security.kubernetes.io/enforce" {
            assert!(
                check.contains(&format!("object.metadata.labels['{k}'] == '{v}'")),
                "{check}"
            );
        }
    }
    for p in &policies {
        let name = p.metadata.name.clone().unwrap();
        let b = bindings
            .iter()
            .find(|b| b.spec.as_ref().unwrap().policy_name.as_deref() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} is not bound"));
        assert_eq!(
            b.spec.as_ref().unwrap().validation_actions,
            Some(vec!["Deny".to_owned()])
        );
    }
}

#[test]
fn the_per_user_namespaces_component_holds_valid_cluster_rbac() {
    let text =
        std::fs::read_to_string(repo().join("k8s/components/per-user-namespaces/clusterrole.yaml"))
            .unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    let role: ClusterRole = strict(&docs[0]);
    let binding: ClusterRoleBinding = strict(&docs[1]);
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    assert_eq!(binding.subjects.unwrap()[0].name, "academy-lab-gateway");
}
