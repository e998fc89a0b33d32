//! Login, tokens and the checks that keep other web pages out, through the
//! real `lab serve` binary and real HTTP clients (issue 13, items 7, 14, 16).
//!
//! Each test starts its own `lab serve --port 0` on a fresh data dir and
//! reads what a person or a script would: its stdout, its log (stderr) and
//! the 0600 `runtime/lab-server.json`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, HOST, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};

/// The binary under test (`LAB_TEST_BIN` runs these tests against another
/// build, e.g. one without a fix, to see them fail).
fn lab_bin() -> PathBuf {
    std::env::var_os("LAB_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lab")))
}

struct Lab {
    child: Child,
    base: String,
    addr: String,
    /// The admin's API token, from lab-server.json.
    token: String,
    /// What `lab serve` printed up to its login URL.
    printed: String,
    /// The login URL it printed.
    login_url: String,
    data: tempfile::TempDir,
    http: reqwest::Client,
}

impl Lab {
    fn start(args: &[&str]) -> Lab {
        let data = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(data.path().join("lab.log")).unwrap();
        let mut child = Command::new(lab_bin())
            .args(["serve", "--port", "0", "--gpus", "none", "--data-dir"])
            .arg(data.path())
            .args(args)
            .env("LAB_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        // Read stdout on a thread, so that the wait has a timeout.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut printed = String::new();
        let login_url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("lab serve printed no login URL:\n{printed}"));
            printed.push_str(&line);
            printed.push('\n');
            if let Some(url) = line.strip_prefix("Log in with: ") {
                break url.split_whitespace().next().unwrap().to_owned();
            }
        };
        let info: Value = serde_json::from_slice(
            &std::fs::read(data.path().join("runtime/lab-server.json")).unwrap(),
        )
        .unwrap();
        let base = info["url"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        Lab {
            child,
            addr: base.trim_start_matches("http://").to_owned(),
            base,
            token: info["token"].as_str().unwrap().to_owned(),
            printed,
            login_url,
            data,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Stops the server (SIGTERM, so its log is flushed) and returns its log.
    fn stop(&mut self) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(self.data.path().join("lab.log")).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in as a browser would (`POST /api/login` from our own page) and
    /// returns the session cookie's value.
    async fn browser_login(&self, body: Value) -> String {
        let r = self
            .http
            .post(self.url("/api/login"))
            .header(ORIGIN, &self.base)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        session_cookie(&r).expect("a session cookie")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find_map(|c| c.strip_prefix("lab_token="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .filter(|c| !c.is_empty())
}

fn code_of(url: &str) -> String {
    url.split_once("?code=")
        .unwrap_or_else(|| panic!("the login URL carries no one-time code: {url}"))
        .1
        .to_owned()
}

#[tokio::test]
async fn the_printed_login_url_holds_a_one_time_code_and_no_api_token() {
    let mut lab = Lab::start(&[]);
    assert!(
        !lab.printed.contains(&lab.token),
        "the admin's API token was printed:\n{}",
        lab.printed
    );
    let code = code_of(&lab.login_url);
    assert_ne!(code, lab.token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(lab.data.path().join("runtime/lab-server.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "lab-server.json is {mode:o}");
    }
    // The code logs a browser in once.
    let cookie = lab.browser_login(json!({ "code": code })).await;
    assert_ne!(
        cookie, lab.token,
        "the cookie is a session, not the API token"
    );
    let again = lab
        .http
        .post(lab.url("/api/login"))
        .header(ORIGIN, &lab.base)
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a code works once"
    );
    // A code is not a token.
    let r = lab
        .http
        .get(lab.url("/api/kernels"))
        .header("Authorization", format!("token {code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // `lab token login-url` makes another, for the running server.
    let out = Command::new(lab_bin())
        .args(["token", "login-url", "--data-dir"])
        .arg(lab.data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout).unwrap();
    assert!(url.starts_with(&lab.base), "{url}");
    lab.browser_login(json!({ "code": code_of(url.trim()) }))
        .await;
    lab.stop();
}

#[tokio::test]
async fn a_token_in_the_url_is_refused_except_on_a_websocket_upgrade() {
    let mut lab = Lab::start(&[]);
    let r = lab
        .http
        .get(lab.url(&format!("/api/kernels?token={}", lab.token)))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("websocket"),
        "{body}"
    );
    // A websocket upgrade still takes it (browsers cannot set headers
    // there): the kernel is unknown (404), not the caller (401).
    let ws = format!(
        "ws://{}/api/kernels/{}/channels?token={}",
        lab.addr,
        uuid::Uuid::new_v4(),
        lab.token
    );
    match tokio_tungstenite::connect_async(ws.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 404)
        }
        other => panic!("expected a 404 upgrade, got {other:?}"),
    }
    // Whatever was asked, the log holds no token and no login code.
    let code = code_of(&lab.login_url);
    let _ = lab
        .http
        .get(lab.url(&format!("/?code={code}")))
        .send()
        .await
        .unwrap();
    lab.browser_login(json!({ "code": code })).await;
    let log = lab.stop();
    assert!(log.contains("TRACE"), "the trace log is written: {log}");
    assert!(!log.contains(&lab.token), "the log holds the API token");
    assert!(!log.contains(&code), "the log holds the login code");
}

#[tokio::test]
async fn a_login_link_only_opens_the_app_and_logs_in_on_a_same_origin_json_post() {
    let lab = Lab::start(&[]);
    let code = code_of(&lab.login_url);
    // Followed from another site: the app, no cookie, nothing used up.
    for link in [format!("/?code={code}"), format!("/?token={}", lab.token)] {
        let r = lab
            .http
            .get(lab.url(&link))
            .header("Sec-Fetch-Site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{link}");
        assert_eq!(session_cookie(&r), None, "{link} set a cookie");
        assert_eq!(r.headers().get("referrer-policy").unwrap(), "no-referrer");
    }
    // The app asks whose the code is before it logs in: no cookie yet.
    let r = lab
        .http
        .post(lab.url("/api/login"))
        .header(ORIGIN, &lab.base)
        .json(&json!({ "code": code, "check": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(session_cookie(&r), None);
    let who: Value = r.json().await.unwrap();
    assert_eq!(who["identity"]["username"], "admin");
    // A page elsewhere cannot confirm it: its Origin is refused, and a
    // form (no Origin check possible in old browsers) cannot send JSON.
    let r = lab
        .http
        .post(lab.url("/api/login"))
        .header(ORIGIN, "http://evil.example")
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = lab
        .http
        .post(lab.url("/api/login"))
        .header(CONTENT_TYPE, "text/plain")
        .body(json!({ "token": lab.token }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(session_cookie(&r), None);
    // Our own page's confirmation logs in.
    lab.browser_login(json!({ "code": code })).await;
}

#[tokio::test]
async fn logout_revokes_the_session_and_leaves_the_api_token_alone() {
    let lab = Lab::start(&[]);
    let cookie = lab.browser_login(json!({ "token": lab.token })).await;
    let get = |cookie: String| {
        lab.http
            .get(lab.url("/api/kernels"))
            .header(COOKIE, format!("lab_token={cookie}"))
            .send()
    };
    assert_eq!(get(cookie.clone()).await.unwrap().status(), StatusCode::OK);
    let r = lab
        .http
        .post(lab.url("/api/logout"))
        .header(ORIGIN, &lab.base)
        .header(COOKIE, format!("lab_token={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(cookie.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "the old cookie still works after logout"
    );
    let r = lab
        .http
        .get(lab.url("/api/kernels"))
        .header("Authorization", format!("token {}", lab.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "logout revoked the API token");
}

#[tokio::test]
async fn a_cookie_request_that_changes_something_must_send_json() {
    let lab = Lab::start(&[]);
    let cookie = lab.browser_login(json!({ "token": lab.token })).await;
    // A same-site page on another port sends our Origin: only its body
    // type gives it away (a form or no-CORS fetch cannot send JSON).
    let r = lab
        .http
        .post(lab.url("/api/contents"))
        .header(ORIGIN, &lab.base)
        .header(COOKIE, format!("lab_token={cookie}"))
        .header(CONTENT_TYPE, "text/plain")
        .body(json!({ "type": "notebook" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = lab
        .http
        .post(lab.url("/api/contents"))
        .header(ORIGIN, &lab.base)
        .header(COOKIE, format!("lab_token={cookie}"))
        .json(&json!({ "type": "notebook" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn no_auth_answers_only_to_a_loopback_host() {
    let lab = Lab::start(&["--no-auth"]);
    let port = lab.addr.rsplit_once(':').unwrap().1.to_owned();
    for (host, allowed) in [
        (format!("127.0.0.1:{port}"), true),
        (format!("localhost:{port}"), true),
        (format!("[::1]:{port}"), true),
        (format!("app.localhost:{port}"), true),
        // DNS rebinding: the attacker's name, resolving to 127.0.0.1.
        (format!("rebind.evil.example:{port}"), false),
        ("127.0.0.1.evil.example".to_owned(), false),
        (format!("localhost.evil.example:{port}"), false),
    ] {
        for path in ["/api/kernels", "/api/contents", "/api/login"] {
            let r = lab
                .http
                .get(lab.url(path))
                .header(HOST, &host)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().is_success(),
                allowed,
                "{host} {path}: {}",
                r.status()
            );
        }
    }
}

#[tokio::test]
async fn no_auth_refuses_cross_site_posts() {
    let lab = Lab::start(&["--no-auth"]);
    // A form or a no-CORS fetch from another page: a text/plain body.
    let r = lab
        .http
        .post(lab.url("/api/contents"))
        .header(CONTENT_TYPE, "text/plain")
        .body(json!({ "type": "notebook" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // JSON, but from another page.
    let r = lab
        .http
        .post(lab.url("/api/contents"))
        .header(ORIGIN, "http://evil.example")
        .json(&json!({ "type": "notebook" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = lab
        .http
        .post(lab.url("/api/kernels"))
        .header(ORIGIN, "null")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let listed: Value = lab
        .http
        .get(lab.url("/api/contents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["content"], json!([]), "nothing was created");
    // Our own page, and a client with no page, are served.
    let r = lab
        .http
        .post(lab.url("/api/contents"))
        .header(ORIGIN, &lab.base)
        .json(&json!({ "type": "notebook" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = lab
        .http
        .post(lab.url("/api/contents"))
        .json(&json!({ "type": "notebook" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}
