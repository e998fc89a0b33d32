//! The fake API server: answers as a real one does (objects, lists,
//! newline-delimited watch events, Status bodies) and records every request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use kube::client::Body;
use serde_json::{Value, json};

pub(crate) type Chunks = mpsc::UnboundedReceiver<Result<Frame<Bytes>, Infallible>>;
pub(crate) type Reply = Response<StreamBody<Chunks>>;

/// One request the backend sent.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    /// Path and query, exactly as sent.
    pub(crate) uri: String,
    pub(crate) body: Value,
}

/// A canned answer to the next request matching `method` and a path prefix
/// (and, where `name` is set, the name of the object in its body).
pub(crate) struct Override {
    pub(crate) method: &'static str,
    pub(crate) path_prefix: String,
    pub(crate) name: Option<String>,
    pub(crate) status: u16,
    pub(crate) body: Value,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) seen: Vec<Seen>,
    pub(crate) pods: BTreeMap<(String, String), Value>,
    pub(crate) rv: u64,
    pub(crate) watch: Option<mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>,
    pub(crate) overrides: Vec<Override>,
    pub(crate) lists: usize,
}

#[derive(Clone, Default)]
pub(crate) struct ApiServer(pub(crate) Arc<Mutex<State>>);

pub(crate) fn reply(status: u16, body: &Value) -> Reply {
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
pub(crate) fn status(code: u16, reason: &str, message: &str, details: Value) -> Value {
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
    pub(crate) fn start() -> (ApiServer, kube::Client) {
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

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The requests other than the watcher's LIST and WATCH.
    pub(crate) fn calls(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| !(s.method == "GET" && s.uri.contains("labelSelector=")))
            .collect()
    }

    pub(crate) fn override_next(
        &self,
        method: &'static str,
        path_prefix: &str,
        status: u16,
        body: Value,
    ) {
        self.lock().overrides.push(Override {
            method,
            path_prefix: path_prefix.to_owned(),
            name: None,
            status,
            body,
        });
    }

    /// As [`ApiServer::override_next`], for the request whose body is the
    /// object named `name` only.
    pub(crate) fn override_next_named(
        &self,
        method: &'static str,
        path_prefix: &str,
        name: &str,
        status: u16,
        body: Value,
    ) {
        self.lock().overrides.push(Override {
            method,
            path_prefix: path_prefix.to_owned(),
            name: Some(name.to_owned()),
            status,
            body,
        });
    }

    pub(crate) fn next_rv(state: &mut State) -> String {
        state.rv += 1;
        state.rv.to_string()
    }

    pub(crate) fn push_event(state: &mut State, kind: &str, object: &Value) {
        if let Some(tx) = &state.watch {
            let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
            line.push(b'\n');
            let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from(line))));
        }
    }

    pub(crate) fn answer(&self, method: &str, uri: &str, body: &Value) -> Reply {
        let mut st = self.lock();
        st.seen.push(Seen {
            method: method.to_owned(),
            uri: uri.to_owned(),
            body: body.clone(),
        });
        let path = uri.split('?').next().unwrap_or_default().to_owned();
        if let Some(i) = st.overrides.iter().position(|o| {
            o.method == method
                && path.starts_with(&o.path_prefix)
                && o.name
                    .as_ref()
                    .is_none_or(|n| body["metadata"]["name"] == n.as_str())
        }) {
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
    pub(crate) fn set_status(&self, ns: &str, name: &str, status: Value, node: Option<&str>) {
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
    pub(crate) fn push_raw(&self, kind: &str, object: Value) {
        let mut st = self.lock();
        Self::push_event(&mut st, kind, &object);
    }

    /// Puts a pod in the cluster directly (one a previous gateway made).
    pub(crate) fn insert_pod(&self, ns: &str, pod: Value) {
        let mut st = self.lock();
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        st.pods.insert((ns.to_owned(), name), pod);
    }

    pub(crate) async fn until<T>(&self, what: &str, mut f: impl FnMut(&State) -> Option<T>) -> T {
        for _ in 0..500 {
            if let Some(t) = f(&self.lock()) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}; seen: {:#?}", self.seen());
    }

    pub(crate) async fn watching(&self) {
        self.until("the watch", |s| s.watch.as_ref().map(|_| ()))
            .await;
    }

    pub(crate) async fn pod_created(&self, ns: &str, name: &str) {
        let key = (ns.to_owned(), name.to_owned());
        self.until("the pod", |s| s.pods.contains_key(&key).then_some(()))
            .await;
    }
}
