//! `lab assignment …`: graded exercises from scripts, through a running
//! gateway's REST API (the same routes the web UI uses), so they work
//! against a remote lab and need no access to its data dir.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Remote {
    /// The gateway, e.g. http://127.0.0.1:8888.
    #[arg(
        long,
        env = "LAB_URL",
        default_value = "http://127.0.0.1:8888",
        global = true
    )]
    url: String,
    #[arg(long, env = "LAB_TOKEN", global = true, default_value = "")]
    token: String,
}

#[derive(clap::Subcommand)]
pub enum AssignmentCommand {
    /// Create or update an assignment from an nbgrader source notebook.
    Import {
        course: String,
        name: String,
        source: PathBuf,
        /// The policy as JSON (dates, late penalty, limits), e.g.
        /// '{"dates": {"due": "2027-01-15T17:00:00Z"}, "late": {"kind": "percent", "percent": 10, "per": "day", "cap": 50}}'.
        #[arg(long)]
        policy: Option<String>,
    },
    /// Release an assignment to the course's engineers.
    Release { course: String, name: String },
    /// Publish grades: hidden-test results show where the policy waits for it.
    Publish { course: String, name: String },
    /// Grade again (every submission, or one), and optionally wait.
    Grade {
        course: String,
        name: String,
        #[arg(long)]
        submission: Option<String>,
        /// Wait until nothing of the assignment is queued or grading.
        #[arg(long)]
        wait: bool,
    },
    /// Submit a notebook (as the token's user) and optionally wait for the feedback.
    Submit {
        course: String,
        name: String,
        notebook: PathBuf,
        #[arg(long)]
        wait: bool,
    },
    /// The gradebook as CSV (to a file, or stdout).
    Export {
        course: String,
        name: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if !self.token.is_empty() {
            req = req.header("Authorization", format!("token {}", self.token));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let why = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            bail!("{status}: {why}");
        }
        Ok(resp)
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        Ok(self.call(method, path, body).await?.json().await?)
    }
}

fn read_notebook(path: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// How long `--wait` waits before giving up.
const WAIT: Duration = Duration::from_secs(3600);

pub(super) fn run(remote: Remote, command: AssignmentCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = Client {
        http: reqwest::Client::new(),
        base: remote.url,
        token: remote.token,
    };
    runtime.block_on(run_with(&client, command))
}

async fn run_with(c: &Client, command: AssignmentCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let path = |course: &str, name: &str| format!("/api/courses/{course}/assignments/{name}");
    match command {
        AssignmentCommand::Import {
            course,
            name,
            source,
            policy,
        } => {
            let mut body = json!({"notebook": read_notebook(&source)?});
            if let Some(p) = policy {
                body["policy"] = serde_json::from_str(&p).context("--policy is not JSON")?;
            }
            let a = c
                .json(Method::PUT, &path(&course, &name), Some(body))
                .await?;
            println!(
                "{course}/{name}: {} graded cells, {} points{}",
                a["cells"].as_array().map_or(0, Vec::len),
                a["max_score"],
                if a["released"].is_null() {
                    " (not released yet: lab assignment release)"
                } else {
                    ""
                }
            );
        }
        AssignmentCommand::Release { course, name } => {
            c.json(
                Method::PATCH,
                &path(&course, &name),
                Some(json!({"released": true})),
            )
            .await?;
            println!("{course}/{name} released");
        }
        AssignmentCommand::Publish { course, name } => {
            c.json(
                Method::PATCH,
                &path(&course, &name),
                Some(json!({"published": true})),
            )
            .await?;
            println!("{course}/{name}: grades published");
        }
        AssignmentCommand::Grade {
            course,
            name,
            submission,
            wait,
        } => {
            let body = json!({"submission": submission});
            let r = c
                .json(
                    Method::POST,
                    &format!("{}/grade", path(&course, &name)),
                    Some(body),
                )
                .await?;
            println!("{} grading(s) queued", r["queued"]);
            if wait {
                wait_book(c, &path(&course, &name)).await?;
            }
        }
        AssignmentCommand::Submit {
            course,
            name,
            notebook,
            wait,
        } => {
            let body = json!({"notebook": read_notebook(&notebook)?});
            let sub = c
                .json(
                    Method::POST,
                    &format!("{}/submissions", path(&course, &name)),
                    Some(body),
                )
                .await?;
            let id = sub["id"].as_str().unwrap_or_default().to_owned();
            println!("submitted: {id}");
            if wait {
                let sub = wait_submission(c, &id).await?;
                print_feedback(&sub);
            }
        }
        AssignmentCommand::Export {
            course,
            name,
            output,
        } => {
            let csv = c
                .call(
                    Method::GET,
                    &format!("{}/gradebook?format=csv", path(&course, &name)),
                    None,
                )
                .await?
                .text()
                .await?;
            match output {
                Some(out) => {
                    std::fs::write(&out, csv)
                        .with_context(|| format!("cannot write {}", out.display()))?;
                    eprintln!("wrote {}", out.display());
                }
                None => print!("{csv}"),
            }
        }
    }
    Ok(())
}

/// Waits until no row of the gradebook is queued or grading, printing
/// progress as it changes.
async fn wait_book(c: &Client, path: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut said = String::new();
    loop {
        let book = c
            .json(reqwest::Method::GET, &format!("{path}/gradebook"), None)
            .await?;
        let rows = book["rows"].as_array().cloned().unwrap_or_default();
        let count = |s: &str| rows.iter().filter(|r| r["state"] == s).count();
        let (queued, grading, graded, failed) = (
            count("queued"),
            count("grading"),
            count("graded"),
            count("failed"),
        );
        let line = format!("queued {queued}, grading {grading}, graded {graded}, failed {failed}");
        if line != said {
            eprintln!("{line}");
            said = line;
        }
        if queued + grading == 0 {
            return Ok(());
        }
        if start.elapsed() > WAIT {
            bail!("still grading after {} s", WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_submission(c: &Client, id: &str) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut said = Value::Null;
    loop {
        let sub = c
            .json(
                reqwest::Method::GET,
                &format!("/api/submissions/{id}"),
                None,
            )
            .await?;
        if sub["state"] != said {
            eprintln!(
                "{}{}",
                sub["state"].as_str().unwrap_or("?"),
                match sub["queue"]["position"].as_u64() {
                    Some(p) => format!(" (position {p})"),
                    None => String::new(),
                }
            );
            said = sub["state"].clone();
        }
        if sub["state"] == "graded" || sub["state"] == "failed" {
            return Ok(sub);
        }
        if start.elapsed() > WAIT {
            bail!("not graded after {} s", WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_feedback(sub: &Value) {
    if let Some(reason) = sub["reason"].as_str() {
        println!("failed: {reason}");
    }
    for cell in sub["feedback"]["cells"].as_array().into_iter().flatten() {
        let points = cell["points"]
            .as_f64()
            .map_or("hidden".to_owned(), |p| format!("{p}"));
        println!(
            "{:<24} {:>8} / {}  {}",
            cell["grade_id"].as_str().unwrap_or(""),
            points,
            cell["max_points"],
            cell["status"].as_str().unwrap_or("")
        );
        let out = cell["output"].as_str().unwrap_or("").trim();
        if !out.is_empty() && cell["status"] != "passed" {
            for line in out.lines().take(6) {
                println!("    {line}");
            }
        }
    }
    if let Some(score) = sub["feedback"]["score"].as_f64() {
        println!("score: {score} / {}", sub["feedback"]["max_score"]);
    }
}
