//! The two servers under test, started as child processes exactly as a user
//! would start them: `lab serve`, and `jupyter kernelgateway` from PyPI.
//!
//! Both get a token, the same kernelspecs (from one Jupyter data path) and
//! no output rate limit, so the benchmark measures forwarding, not a policy.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// Which gateway a measurement ran against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Academy Lab's `lab serve`.
    Lab,
    /// Jupyter Kernel Gateway 3.0.1.
    KernelGateway,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Lab => "Academy Lab",
            Kind::KernelGateway => "Kernel Gateway",
        }
    }
}

/// What both servers are started with.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `target/release/lab`.
    pub lab: PathBuf,
    /// The venv holding jupyter_kernel_gateway, ipykernel and our kernelspecs.
    pub venv: PathBuf,
    /// Ready academy-candle kernels our gateway keeps (0: no pool).
    pub warm_pool: u32,
}

impl Setup {
    fn jupyter_path(&self) -> PathBuf {
        self.venv.join("share/jupyter")
    }

    /// PATH with the venv first, so kernelspecs that say `python` get the venv's.
    fn path(&self) -> String {
        let venv_bin = self.venv.join("bin");
        match std::env::var("PATH") {
            Ok(p) => format!("{}:{p}", venv_bin.display()),
            Err(_) => venv_bin.display().to_string(),
        }
    }
}

/// A running server.
pub struct Server {
    pub kind: Kind,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub token: String,
    child: Child,
    data: tempfile::TempDir,
}

impl Server {
    pub fn ws_base(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The server process's resident memory (its kernels not included).
    pub fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// Open file descriptors of the server process.
    pub fn open_fds(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()?))
                .ok()?
                .count(),
        )
    }

    pub async fn start(kind: Kind, setup: &Setup) -> Result<Server> {
        let data = tempfile::tempdir()?;
        let port = free_port()?;
        let (cmd, token) = match kind {
            Kind::Lab => Self::lab(setup, data.path(), port).await?,
            Kind::KernelGateway => Self::kernel_gateway(setup, data.path(), port),
        };
        let child = spawn(cmd, setup, data.path(), kind.label())?;
        let mut server = Server {
            kind,
            base: format!("http://127.0.0.1:{port}"),
            token,
            child,
            data,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// `lab serve`'s command line, and the token of an admin added before it starts.
    async fn lab(setup: &Setup, data: &Path, port: u16) -> Result<(Command, String)> {
        let out = Command::new(&setup.lab)
            .args(["user", "add", "bench", "--role", "admin", "--data-dir"])
            .arg(data)
            .output()
            .await
            .with_context(|| format!("running {}", setup.lab.display()))?;
        if !out.status.success() {
            bail!("lab user add: {}", String::from_utf8_lossy(&out.stderr));
        }
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        // The benchmark is one user holding many kernels and websockets
        // (P1's 100 clients, P5's 10,000 websockets): past the per-user
        // limits that protect a shared lab (`[limits]`, README "Limits").
        tokio::fs::write(
            data.join("lab.toml"),
            "[limits]\nkernels_per_user = 1000\nsessions_per_user = 20000\n",
        )
        .await
        .context("writing the benchmark's lab.toml")?;
        let mut cmd = Command::new(&setup.lab);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--port", &port.to_string()])
            .args(["--iopub-msg-rate-limit", "1e12"])
            .args(["--iopub-data-rate-limit", "1e15"])
            .args(["--cull-idle-cpu", "off", "--gpus", "none"]);
        if setup.warm_pool > 0 {
            // With the default sandbox: a pooled kernel is confined at its
            // handover, as a cold one before exec.
            cmd.args([
                "--warm-pool",
                &format!("academy-candle={n},academy-rust={n}", n = setup.warm_pool),
            ]);
        }
        Ok((cmd, token))
    }

    /// `jupyter kernelgateway`'s command line, with a fresh token.
    fn kernel_gateway(setup: &Setup, data: &Path, port: u16) -> (Command, String) {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut cmd = Command::new(setup.venv.join("bin/jupyter"));
        cmd.arg("kernelgateway")
            .arg("--KernelGatewayApp.ip=127.0.0.1")
            .arg(format!("--KernelGatewayApp.port={port}"))
            .arg(format!("--KernelGatewayApp.auth_token={token}"))
            .arg("--JupyterWebsocketPersonality.list_kernels=True")
            .arg("--ZMQChannelsWebsocketConnection.limit_rate=False")
            // Its kernels' connection files in a folder of this run's own,
            // so `stop` can find the kernels it leaves behind.
            .env("JUPYTER_RUNTIME_DIR", data.join(KG_RUNTIME))
            .current_dir(data);
        (cmd, token)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.data.path().join(LOG)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!(
                    "{} exited ({status}) before it answered:\n{}",
                    self.kind.label(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            let ok = http
                .get(format!("{}/api/kernelspecs", self.base))
                .header("Authorization", format!("token {}", self.token))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{} did not answer within 60 s", self.kind.label());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        self.stop_server().await;
        if self.kind == Kind::KernelGateway {
            // Kernel Gateway starts each kernel in a session of its own, so
            // a kernel it launched but had not reported when it failed
            // outlives it: found by its connection file's folder.
            let left = kill_kernels_under(&self.data.path().join(KG_RUNTIME));
            if left > 0 {
                eprintln!("  stopped {left} kernels Kernel Gateway left running");
            }
        }
    }

    async fn stop_server(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            // SIGTERM first, so the server shuts its kernels down itself.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// Each server's stdout and stderr, in its data dir.
const LOG: &str = "server.log";
/// Kernel Gateway's `JUPYTER_RUNTIME_DIR`, in its data dir.
const KG_RUNTIME: &str = "runtime";

/// SIGKILLs every process whose command line names a file under `dir`;
/// how many.
fn kill_kernels_under(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&dir)
            && std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        {
            killed += 1;
        }
    }
    killed
}

fn spawn(mut cmd: Command, setup: &Setup, data: &Path, what: &str) -> Result<Child> {
    let log = std::fs::File::create(data.join(LOG))?;
    cmd.env("JUPYTER_PATH", setup.jupyter_path())
        .env("PATH", setup.path())
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    cmd.spawn().with_context(|| format!("starting {what}"))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The venv's Python interpreter.
pub fn python(venv: &Path) -> PathBuf {
    venv.join("bin/python")
}
