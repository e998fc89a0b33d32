//! The kubernetes backend against a fake API server, through kube's own
//! client over tower-test's mock service (the pattern kube-rs tests with).
//!
//! The fake answers as a real API server does, with real-shaped objects,
//! lists, newline-delimited watch events and Status bodies, and records
//! every request, so the tests assert the exact verbs, paths, query strings
//! and bodies the backend sends. No cluster is needed; the real-cluster
//! test is `kube_cluster.rs`, behind KUBECONFIG.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use kube::client::Body;
use launch::kube::{KubeConfig, KubeFailure, KubeLauncher, Timeout, pod};
use launch::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launcher};
use serde_json::{Value, json};

type Chunks = mpsc::UnboundedReceiver<Result<Frame<Bytes>, Infallible>>;
type Reply = Response<StreamBody<Chunks>>;

/// One request the backend sent.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, exactly as sent.
    uri: String,
    body: Value,
}

/// A canned answer to the next request matching `method` and a path prefix.
struct Override {
    method: &'static str,
    path_prefix: String,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    pods: BTreeMap<(String, String), Value>,
    rv: u64,
    watch: Option<mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>,
    overrides: Vec<Override>,
    lists: usize,
}

#[derive(Clone, Default)]
struct ApiServer(Arc<Mutex<State>>);

fn reply(status: u16, body: &Value) -> Reply {
    let (tx, rx) = mpsc::unbounded();
    let bytes = if body.is_string() {
        Bytes::from(body.as_str().unwrap_or_default().to_owned())
    } else {
        Bytes::from(serde_json::to_vec(body).unwrap())
    };
    tx.unbounded_send(Ok(Frame::data(bytes))).unwrap();
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(StreamBody::new(rx))
        .unwrap()
}

/// A Status body as the API server sends it.
fn status(code: u16, reason: &str, message: &str, details: Value) -> Value {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if !details.is_null() {
        s["details"] = details;
    }
    s
}

impl ApiServer {
    /// A client whose every request this fake answers.
    fn start() -> (ApiServer, kube::Client) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Reply>();
        let server = ApiServer::default();
        let me = server.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            while let Some((req, send)) = handle.next_request().await {
                let me = me.clone();
                // Each request on its own task: a watch stays open.
                tokio::spawn(async move {
                    let method = req.method().to_string();
                    let uri = req.uri().to_string();
                    let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                    let body = if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                    };
                    let response = me.answer(&method, &uri, &body);
                    send.send_response(response);
                });
            }
        });
        let client = kube::Client::new(svc, "default");
        (server, client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The requests other than the watcher's LIST and WATCH.
    fn calls(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| !(s.method == "GET" && s.uri.contains("labelSelector=")))
            .collect()
    }

    fn override_next(&self, method: &'static str, path_prefix: &str, status: u16, body: Value) {
        self.lock().overrides.push(Override {
            method,
            path_prefix: path_prefix.to_owned(),
            status,
            body,
        });
    }

    fn next_rv(state: &mut State) -> String {
        state.rv += 1;
        state.rv.to_string()
    }

    fn push_event(state: &mut State, kind: &str, object: &Value) {
        if let Some(tx) = &state.watch {
            let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
            line.push(b'\n');
            let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from(line))));
        }
    }

    fn answer(&self, method: &str, uri: &str, body: &Value) -> Reply {
        let mut st = self.lock();
        st.seen.push(Seen {
            method: method.to_owned(),
            uri: uri.to_owned(),
            body: body.clone(),
        });
        let path = uri.split('?').next().unwrap_or_default().to_owned();
        if let Some(i) = st
            .overrides
            .iter()
            .position(|o| o.method == method && path.starts_with(&o.path_prefix))
        {
            let o = st.overrides.remove(i);
            return reply(o.status, &o.body);
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["api", "v1", "namespaces", _, "pods"] | ["api", "v1", "pods"])
                if uri.contains("watch=true") =>
            {
                let (tx, rx) = mpsc::unbounded();
                st.watch = Some(tx);
                Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(StreamBody::new(rx))
                    .unwrap()
            }
            ("GET", ["api", "v1", "namespaces", _, "pods"] | ["api", "v1", "pods"]) => {
                st.lists += 1;
                let items: Vec<Value> = st.pods.values().cloned().collect();
                let rv = Self::next_rv(&mut st);
                reply(
                    200,
                    &json!({"kind": "PodList", "apiVersion": "v1",
                            "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            ("POST", ["api", "v1", "namespaces", ns, "pods"]) => {
                let mut pod = body.clone();
                let name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if st.pods.contains_key(&((*ns).to_owned(), name.clone())) {
                    return reply(
                        409,
                        &status(
                            409,
                            "AlreadyExists",
                            &format!("pods \"{name}\" already exists"),
                            json!({"name": name, "kind": "pods"}),
                        ),
                    );
                }
                pod["apiVersion"] = json!("v1");
                pod["kind"] = json!("Pod");
                pod["metadata"]["uid"] = json!(format!("uid-{name}"));
                pod["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut st));
                pod["status"] = json!({"phase": "Pending"});
                st.pods.insert(((*ns).to_owned(), name), pod.clone());
                Self::push_event(&mut st, "ADDED", &pod);
                reply(201, &pod)
            }
            ("POST", ["api", "v1", "namespaces", _, "secrets"]) => {
                let mut secret = body.clone();
                secret["metadata"]["uid"] = json!("uid-secret");
                reply(201, &secret)
            }
            ("POST", ["api", "v1", "namespaces"]) => reply(201, body),
            // NetworkPolicies, Kueue LocalQueues, PVCs: stored as sent.
            (
                "POST",
                ["apis", _, _, "namespaces", _, _]
                | ["api", "v1", "namespaces", _, "persistentvolumeclaims"],
            ) => reply(201, body),
            // A merge patch of a NetworkPolicy: stored as sent.
            ("PATCH", ["apis", "networking.k8s.io", _, "namespaces", _, _, _]) => reply(200, body),
            ("GET", ["api", "v1", "namespaces", _, "pods", _, "log"]) => {
                reply(200, &json!("kernel started\nlistening on 9000\n"))
            }
            ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
                match st.pods.get(&((*ns).to_owned(), (*name).to_owned())) {
                    Some(p) => reply(200, &p.clone()),
                    None => reply(
                        404,
                        &status(
                            404,
                            "NotFound",
                            &format!("pods \"{name}\" not found"),
                            Value::Null,
                        ),
                    ),
                }
            }
            ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
                match st.pods.remove(&((*ns).to_owned(), (*name).to_owned())) {
                    Some(mut p) => {
                        p["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut st));
                        Self::push_event(&mut st, "DELETED", &p);
                        reply(200, &p)
                    }
                    None => reply(
                        404,
                        &status(
                            404,
                            "NotFound",
                            &format!("pods \"{name}\" not found"),
                            Value::Null,
                        ),
                    ),
                }
            }
            _ => reply(
                404,
                &status(
                    404,
                    "NotFound",
                    &format!("the server could not find {uri}"),
                    Value::Null,
                ),
            ),
        }
    }

    /// Sets a pod's status, as the kubelet would, and tells the watch.
    fn set_status(&self, ns: &str, name: &str, status: Value, node: Option<&str>) {
        let mut st = self.lock();
        let rv = Self::next_rv(&mut st);
        let pod = st
            .pods
            .get_mut(&(ns.to_owned(), name.to_owned()))
            .expect("pod exists");
        pod["status"] = status;
        pod["metadata"]["resourceVersion"] = json!(rv);
        if let Some(n) = node {
            pod["spec"]["nodeName"] = json!(n);
        }
        let pod = pod.clone();
        Self::push_event(&mut st, "MODIFIED", &pod);
    }

    /// Sends a raw watch event line.
    fn push_raw(&self, kind: &str, object: Value) {
        let mut st = self.lock();
        Self::push_event(&mut st, kind, &object);
    }

    /// Puts a pod in the cluster directly (one a previous gateway made).
    fn insert_pod(&self, ns: &str, pod: Value) {
        let mut st = self.lock();
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        st.pods.insert((ns.to_owned(), name), pod);
    }

    async fn until<T>(&self, what: &str, mut f: impl FnMut(&State) -> Option<T>) -> T {
        for _ in 0..500 {
            if let Some(t) = f(&self.lock()) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}; seen: {:#?}", self.seen());
    }

    async fn watching(&self) {
        self.until("the watch", |s| s.watch.as_ref().map(|_| ()))
            .await;
    }

    async fn pod_created(&self, ns: &str, name: &str) {
        let key = (ns.to_owned(), name.to_owned());
        self.until("the pod", |s| s.pods.contains_key(&key).then_some(()))
            .await;
    }
}

const NS: &str = "academy-lab";
const SELECTOR: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dacademy-lab-gateway";

fn config() -> KubeConfig {
    KubeConfig {
        kernel_image: "registry.academy.example/academy-lab/kernel:0.1.0".into(),
        runtime_class: Some("nvidia".into()),
        gpu_products: BTreeMap::from([("H100-80GB".into(), "NVIDIA-H100-80GB-HBM3".into())]),
        kueue: true,
        launch_timeout: Timeout(Duration::from_secs(5)),
        ..KubeConfig::default()
    }
}

fn spec(user: &str, gpus: u32, model: Option<&str>) -> LaunchSpec {
    LaunchSpec {
        kernel_id: uuid::Uuid::parse_str("4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a09").unwrap(),
        argv: vec![
            "/usr/local/bin/academy-kernel".into(),
            "candle".into(),
            "-f".into(),
            "{connection_file}".into(),
        ],
        env: BTreeMap::from([
            ("KERNEL_USERNAME".into(), user.into()),
            ("CUDA_VISIBLE_DEVICES".into(), "0".into()),
            ("ACADEMY_VIRTUAL_GPU".into(), "1".into()),
        ]),
        cwd: "/unused".into(),
        gpus: (0..gpus).map(|i| i.to_string()).collect(),
        user: user.into(),
        group: Some("Cohort 7".into()),
        gpu_model: model.map(str::to_owned),
        cpu: None,
        memory: None,
        progress: None,
    }
}

const POD: &str = "alice-4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a09";

fn running_ready(ip: &str) -> Value {
    json!({
        "phase": "Running", "podIP": ip,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "containerStatuses": [{"name": "kernel", "ready": true, "restartCount": 0,
            "image": "registry.academy.example/academy-lab/kernel:0.1.0", "imageID": "",
            "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}}}],
    })
}

async fn launcher_with(config: KubeConfig) -> (ApiServer, Arc<KubeLauncher>) {
    let (server, client) = ApiServer::start();
    let launcher = Arc::new(KubeLauncher::new(client, config));
    server.watching().await;
    (server, launcher)
}

fn launch(
    l: &Arc<KubeLauncher>,
    s: LaunchSpec,
) -> tokio::task::JoinHandle<Result<launch::Launched, LaunchError>> {
    let l = l.clone();
    tokio::spawn(async move { l.launch(s).await })
}

fn kube_failure(r: Result<launch::Launched, LaunchError>) -> KubeFailure {
    match r {
        Err(e) => {
            assert_eq!(e.metric_label(), "kube", "{e:?}");
            e.backend_error::<KubeFailure>()
                .cloned()
                .unwrap_or_else(|| panic!("expected a Kubernetes failure, got {e:?}"))
        }
        Ok(_) => panic!("expected a Kubernetes failure, got a kernel"),
    }
}

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
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kernel",
                                                "app.kubernetes.io/name": "academy-lab"}},
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
    // With Kueue, the group's LocalQueue in the user's namespace.
    assert_eq!(
        (calls[2].method.as_str(), calls[2].uri.as_str()),
        (
            "POST",
            "/apis/kueue.x-k8s.io/v1beta1/namespaces/lab-alice-smith-bdd645be95/localqueues?"
        )
    );
    assert_eq!(
        calls[2].body,
        json!({
            "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue",
            "metadata": {"name": "cohort-7", "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "academy-lab-gateway",
                           "app.kubernetes.io/part-of": "academy-lab"}},
            "spec": {"clusterQueue": "cohort-7"},
        })
    );
    assert_eq!(
        calls[3].uri,
        "/api/v1/namespaces/lab-alice-smith-bdd645be95/pods?"
    );
    assert_eq!(
        calls[3].body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
        "cohort-7"
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
    assert_eq!(calls[4].uri, format!("/api/v1/namespaces/{ns}/secrets?"));
    assert_eq!(
        calls[5].uri,
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
