//! The gateway in-process on port 0, and real HTTP and websocket clients
//! for it, shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lab_gateway::kernels::KernelManager;
use lab_gateway::kernelspecs::Specs;
use lab_gateway::store::{Role, Store};
use lab_gateway::{AppState, run};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub struct Gateway {
    pub kernels: Arc<KernelManager>,
    pub base: String,
    pub ws_base: String,
    pub store: Store,
    pub data: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// The real academy kernel, built on first use if it is not there yet (the
/// outer ring of tests runs real kernels; `cargo test -p lab-gateway` on a
/// fresh checkout builds it once).
pub fn academy_kernel() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target"));
            let p = target.join("debug/academy-kernel");
            if !p.is_file() {
                let status = std::process::Command::new(env!("CARGO"))
                    .args(["build", "-p", "kernel-runtime", "--bin", "academy-kernel"])
                    .current_dir(&workspace)
                    .status()
                    .expect("cannot run cargo to build academy-kernel");
                assert!(status.success(), "building academy-kernel failed");
            }
            assert!(p.is_file(), "{} is missing after its build", p.display());
            p
        })
        .clone()
}

pub async fn start_gateway() -> Gateway {
    start_gateway_with(lab_gateway::ws::RateLimits::default()).await
}

pub async fn start_gateway_with(limits: lab_gateway::ws::RateLimits) -> Gateway {
    start_gateway_full(limits, Default::default()).await
}

pub async fn start_gateway_full(
    limits: lab_gateway::ws::RateLimits,
    pool: std::collections::BTreeMap<String, usize>,
) -> Gateway {
    start_gateway_setup(limits, move |k, _| k.with_warm_pool(pool)).await
}

/// A gateway whose kernel manager `configure` sets up (it gets the store too).
pub async fn start_gateway_configured(
    configure: impl FnOnce(KernelManager, &Store) -> KernelManager,
) -> Gateway {
    start_gateway_setup(Default::default(), configure).await
}

async fn start_gateway_setup(
    limits: lab_gateway::ws::RateLimits,
    configure: impl FnOnce(KernelManager, &Store) -> KernelManager,
) -> Gateway {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(&data.path().join("lab.db")).unwrap();
    let specs = Specs::discover(&[], Some(&academy_kernel()));
    let launcher = Arc::new(launch::local::LocalLauncher::new(
        data.path().join("runtime"),
    ));
    let kernels = Arc::new(configure(
        KernelManager::new(launcher, specs, store.clone(), data.path().join("users")),
        &store,
    ));
    kernels.start_background();
    {
        let kernels = kernels.clone();
        tokio::spawn(async move { kernels.fill_pool().await });
    }
    let kernels = kernels;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state_kernels = kernels.clone();
    let state = AppState {
        channels: Arc::new(lab_gateway::ws::Channels::new(limits, Default::default())),
        ..AppState::new(store.clone(), kernels, data.path().join("users"))
    };
    state.grader.start().await;
    tokio::spawn(run(listener, state, std::future::pending()));
    Gateway {
        kernels: state_kernels,
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        store,
        data,
        http: reqwest::Client::new(),
    }
}

/// A test that ends (or fails) must not leave its kernels running: every
/// process started with a connection file in this gateway's data dir
/// (running, pooled or still starting) is killed with its process group.
impl Drop for Gateway {
    fn drop(&mut self) {
        // Kernels of every launcher a test made over this data dir.
        let mine = format!("{}/", self.data.path().display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(&mine) {
                continue;
            }
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
                let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            } else {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

impl Gateway {
    pub fn user(&self, name: &str) -> String {
        self.user_in(name, Role::Engineer, None)
    }

    /// A user with a role and group; returns their token.
    pub fn user_in(&self, name: &str, role: Role, group: Option<&str>) -> String {
        self.store.add_user(name, role, group).unwrap();
        self.store.create_token(name, "test").unwrap().1
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("token {token}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    /// A request with a JSON body; the status and the JSON answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {token}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Starts a kernel of `spec` for the token's user; its id.
    pub async fn start_kernel(&self, token: &str, spec: &str) -> String {
        let (status, model) = self
            .post("/api/kernels", token, serde_json::json!({ "name": spec }))
            .await;
        assert_eq!(status, 201, "{model}");
        model["id"].as_str().unwrap().to_owned()
    }

    /// A request with a raw body and content type; the response as it came.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {token}"));
        if let Some((content_type, text)) = body {
            req = req
                .header("Content-Type", content_type)
                .body(text.to_owned());
        }
        req.send().await.unwrap()
    }

    /// The body of a GET as text.
    pub async fn text(&self, path: &str, token: &str) -> String {
        self.raw(reqwest::Method::GET, path, token, None)
            .await
            .text()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> u16 {
        self.http
            .delete(format!("{}{path}", self.base))
            .header("Authorization", format!("token {token}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(g: &Gateway, id: &str, token: &str) -> Ws {
    connect_session(g, id, token, &uuid::Uuid::new_v4().to_string(), None).await
}

pub async fn connect_session(
    g: &Gateway,
    id: &str,
    token: &str,
    session: &str,
    resume_after: Option<&str>,
) -> Ws {
    let mut url = format!(
        "{}/api/kernels/{id}/channels?session_id={session}&token={token}",
        g.ws_base
    );
    if let Some(m) = resume_after {
        url.push_str(&format!("&resume_after={m}"));
    }
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next JSON message on the websocket; fails the test if none comes
/// within 30 s or the socket closes.
pub async fn next_msg(ws: &mut Ws) -> Value {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("no message for 30 s");
        match next {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("websocket closed: {other:?}"),
        }
    }
}

/// Reads messages until one satisfies `pred`; returns it.
pub async fn wait_msg(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let m = next_msg(ws).await;
        if pred(&m) {
            return m;
        }
    }
}

/// The close code the server ends the websocket with (`None`: it ended
/// without one), within 30 s.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("no close within 30 s");
        match next {
            Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

pub fn execute_request(code: &str) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let msg = json!({
        "header": {"msg_id": id, "msg_type": "execute_request", "username": "t", "session": "s1",
                   "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
        "parent_header": {}, "metadata": {},
        "content": {"code": code, "silent": false, "store_history": true, "user_expressions": {},
                    "allow_stdin": false, "stop_on_error": true},
        "channel": "shell"
    });
    (id, msg.to_string())
}

/// Runs a cell over the websocket; returns (reply content, stream text, result text).
pub async fn run_cell(ws: &mut Ws, code: &str) -> (Value, String, String) {
    let (id, text) = execute_request(code);
    ws.send(Message::Text(text.into())).await.unwrap();
    let mut reply = None;
    let mut idle = false;
    let mut stream = String::new();
    let mut result = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reply.is_none() || !idle {
        assert!(Instant::now() < deadline, "cell timed out");
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("no message for 30 s");
        let t = match next {
            Some(Ok(Message::Text(t))) => t,
            other => panic!("websocket closed: {other:?}"),
        };
        let m: Value = serde_json::from_str(&t).unwrap();
        if m["parent_header"]["msg_id"] != id.as_str() {
            continue;
        }
        match m["msg_type"].as_str().unwrap() {
            "execute_reply" => reply = Some(m["content"].clone()),
            "stream" => stream.push_str(m["content"]["text"].as_str().unwrap()),
            "execute_result" => {
                result = m["content"]["data"]["text/plain"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
            "status" if m["content"]["execution_state"] == "idle" => idle = true,
            _ => {}
        }
        assert_eq!(
            m["channel"],
            if m["msg_type"] == "execute_reply" {
                "shell"
            } else {
                "iopub"
            }
        );
    }
    (reply.unwrap(), stream, result)
}

pub async fn send(
    g: &Gateway,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = g
        .http
        .request(method, format!("{}{path}", g.base))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until a submission is graded or failed, within `limit`; the
/// submission as its caller sees it.
pub async fn graded_within(g: &Gateway, token: &str, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, sub) = g.get(&format!("/api/submissions/{id}"), token).await;
        assert_eq!(status, 200, "{sub}");
        if sub["state"] == "graded" || sub["state"] == "failed" {
            return sub;
        }
        assert!(Instant::now() < deadline, "not graded in {limit:?}: {sub}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
