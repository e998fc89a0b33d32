//! The in-process lab the kernel layer's tests run against: a gateway on
//! port 0 over [`FakeLauncher`] kernels, with real HTTP and websocket
//! clients for it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::fixtures::{FakeLauncher, fake_specs};
use crate::kernels::{KernelManager, Subscription};
use crate::scheduling::Scheduling;
use crate::store::{Role, Store, User};

/// Every wait in these tests ends within this.
pub const WITHIN: Duration = Duration::from_secs(10);

pub struct Lab {
    pub kernels: Arc<KernelManager>,
    pub launcher: Arc<FakeLauncher>,
    pub store: Store,
    pub base: String,
    pub ws_base: String,
    pub token: String,
    _data: tempfile::TempDir,
}

/// A lab of `cluster` GPUs (`""` for none) on fake kernels, served on port 0.
pub async fn lab(cluster: &str, configure: impl FnOnce(KernelManager) -> KernelManager) -> Lab {
    let lab = quiet_lab(cluster, configure).await;
    lab.kernels.start_background();
    lab
}

/// A lab whose background task (admission's clock, the culler's tick) does
/// not run: the test drives `cull` itself.
pub async fn quiet_lab(
    cluster: &str,
    configure: impl FnOnce(KernelManager) -> KernelManager,
) -> Lab {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(&data.path().join("lab.db")).unwrap();
    let launcher = FakeLauncher::new();
    lab_on(data, store, launcher, cluster, configure).await
}

pub async fn lab_on(
    data: tempfile::TempDir,
    store: Store,
    launcher: Arc<FakeLauncher>,
    cluster: &str,
    configure: impl FnOnce(KernelManager) -> KernelManager,
) -> Lab {
    let cluster = scheduler::Cluster::parse(cluster).unwrap();
    let scheduling = Arc::new(Scheduling::fresh(cluster, store.clone()));
    let manager = KernelManager::new(
        launcher.clone(),
        fake_specs(),
        store.clone(),
        data.path().join("users"),
    )
    .with_scheduling(scheduling)
    .with_queue_wait(Duration::ZERO)
    .with_orphan_timeout(None);
    let kernels = Arc::new(configure(manager));
    if store.user("ada").unwrap().is_none() {
        store.add_user("ada", Role::Engineer, None).unwrap();
    }
    let token = store.create_token("ada", "test").unwrap().1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = crate::AppState::new(store.clone(), kernels.clone(), data.path().join("users"));
    tokio::spawn(crate::run(listener, state, std::future::pending()));
    Lab {
        kernels,
        launcher,
        store,
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        token,
        _data: data,
    }
}

impl Lab {
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = tokio::time::timeout(
            WITHIN,
            reqwest::Client::new()
                .request(method, format!("{}{path}", self.base))
                .header("Authorization", format!("token {}", self.token))
                .json(&body)
                .send(),
        )
        .await
        .expect("no answer in time")
        .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn start(&self, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, "/api/kernels", body).await
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn user(&self) -> User {
        self.store.user("ada").unwrap().unwrap()
    }

    /// Waits until the kernel's model satisfies `pred`.
    pub async fn wait_model(&self, id: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
        tokio::time::timeout(WITHIN, async {
            loop {
                let (status, m) = self
                    .send(
                        reqwest::Method::GET,
                        &format!("/api/kernels/{id}"),
                        json!(null),
                    )
                    .await;
                if pred(status, &m) {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the kernel never reached the state")
    }

    /// Runs `code` over a websocket; the text it printed.
    pub async fn run(&self, id: &str, code: &str) -> String {
        let url = format!(
            "{}/api/kernels/{id}/channels?token={}",
            self.ws_base, self.token
        );
        let (mut ws, _) = tokio::time::timeout(WITHIN, tokio_tungstenite::connect_async(url))
            .await
            .unwrap()
            .unwrap();
        let msg_id = uuid::Uuid::new_v4().to_string();
        let msg = json!({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "ada",
                       "session": "s", "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": false, "store_history": true,
                        "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
        });
        ws.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        let (mut out, mut replied, mut idle) = (String::new(), false, false);
        while !(replied && idle) {
            let next = tokio::time::timeout(WITHIN, ws.next())
                .await
                .expect("no reply");
            let Some(Ok(Message::Text(t))) = next else {
                panic!("websocket closed: {next:?}");
            };
            let m: Value = serde_json::from_str(&t).unwrap();
            if m["parent_header"]["msg_id"] != msg_id.as_str() {
                continue;
            }
            match m["msg_type"].as_str().unwrap_or_default() {
                "stream" => out.push_str(m["content"]["text"].as_str().unwrap_or_default()),
                "execute_reply" => replied = true,
                "status" => idle = m["content"]["execution_state"] == "idle",
                _ => {}
            }
        }
        out
    }
}

/// The gateway notice among what a subscriber got, waiting for it (other
/// messages, a kernel's own statuses, are passed over).
pub async fn next_notice(iopub: &mut Subscription) -> Value {
    loop {
        let m = tokio::time::timeout(WITHIN, iopub.rx.recv())
            .await
            .expect("no notice in time")
            .expect("the kernel's messages ended");
        if m.ids().1 == "display_data" {
            return serde_json::from_slice(&m.content).unwrap();
        }
    }
}

/// The gateway notice already received, if any, without waiting (for
/// paused time).
pub fn notice_now(iopub: &mut Subscription) -> Option<Value> {
    while let Ok(m) = iopub.rx.try_recv() {
        if m.ids().1 == "display_data" {
            return Some(serde_json::from_slice(&m.content).unwrap());
        }
    }
    None
}

pub fn gpu_start(gpus: u32) -> Value {
    json!({"name": "fake", "resources": {"gpus": gpus}})
}
