//! Kernel benchmark, side by side with evcxr_jupyter, in one run.
//!
//! Launches each kernel from its installed kernelspec, exactly as Jupyter
//! would, and drives it over ZeroMQ with the same Rust client:
//! - start to ready: process spawn until the first `kernel_info_reply`,
//!   then the first cell right after it;
//! - a trivial cell round trip: `execute_request` until the reply and the
//!   idle status of that request have both arrived;
//! - a warm Rust cell: the same, after the session has compiled once;
//! - a second kernel's `:dep candle-core`, from the shared compile cache.
//!
//! A full run also writes its table into BENCHMARKS.md.
//!
//! Run it with `scripts/bench-kernels`, which installs evcxr_jupyter 0.22 and
//! our kernelspecs first. `BENCH_QUICK=1` takes fewer samples.

use std::path::Path;
use std::time::{Duration, Instant};

use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, JupyterMessage, JupyterMessageContent, KernelInfoRequest,
    ReplyStatus,
};
use jupyter_zmq_client as zmq;

struct Running {
    child: tokio::process::Child,
    shell: zmq::ClientShellConnection,
    iopub: zmq::ClientIoPubConnection,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn connection_info() -> ConnectionInfo {
    kernel_runtime::connection::fresh_loopback(None)
        .await
        .expect("free ports")
}

/// Starts a kernel and returns it with the time until it answered kernel_info.
async fn start(name: &str) -> (Running, Duration) {
    let spec = zmq::find_kernelspec(name)
        .await
        .unwrap_or_else(|e| panic!("kernelspec {name}: {e}"));
    let info = connection_info().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kernel.json");
    std::fs::write(&file, serde_json::to_string(&info).expect("json")).expect("write");
    let started = Instant::now();
    let mut cmd = spec.command(Path::new(&file), None, None).expect("command");
    let child = cmd.kill_on_drop(true).spawn().expect("spawn kernel");
    let session = uuid::Uuid::new_v4().to_string();
    let mut shell = zmq::create_client_shell_connection_with_identity(
        &info,
        &session,
        zmq::peer_identity_for_session(&session).expect("identity"),
    )
    .await
    .expect("shell");
    let iopub = zmq::create_client_iopub_connection(&info, "", &session)
        .await
        .expect("iopub");
    loop {
        shell
            .send(JupyterMessage::new(KernelInfoRequest {}, None))
            .await
            .expect("send");
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(20), shell.read()).await
            && m.message_type() == "kernel_info_reply"
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} never became ready"
        );
    }
    let ready = started.elapsed();
    let mut running = Running {
        child,
        shell,
        iopub,
        _dir: dir,
    };
    // Drain replies to the extra kernel_info requests sent while starting.
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(200), running.shell.read()).await
    {}
    (running, ready)
}

/// One cell, until its execute_reply and its idle status; returns the time.
async fn run_cell(k: &mut Running, code: &str) -> Duration {
    let req: JupyterMessage = ExecuteRequest::new(code.to_owned()).into();
    let id = req.header.msg_id.clone();
    let t = Instant::now();
    k.shell.send(req).await.expect("send");
    let mut replied = false;
    let mut idle = false;
    while !(replied && idle) {
        tokio::select! {
            m = k.shell.read() => {
                let m = m.expect("shell");
                if m.parent_header.as_ref().is_some_and(|h| h.msg_id == id) {
                    if let JupyterMessageContent::ExecuteReply(r) = &m.content {
                        assert!(matches!(r.status, ReplyStatus::Ok), "cell failed: {code}");
                    }
                    replied = true;
                }
            }
            m = k.iopub.read() => {
                let m = m.expect("iopub");
                if m.parent_header.as_ref().is_some_and(|h| h.msg_id == id)
                    && let JupyterMessageContent::Status(s) = &m.content
                    && matches!(s.execution_state, jupyter_protocol::ExecutionState::Idle)
                {
                    idle = true;
                }
            }
        }
    }
    t.elapsed()
}

struct Stats {
    median: f64,
    p99: f64,
    n: usize,
}

fn stats(mut xs: Vec<Duration>) -> Stats {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = xs.len();
    Stats {
        median: ms(xs[n / 2]),
        p99: ms(xs[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1]),
        n,
    }
}

fn row(what: &str, ours: &Stats, theirs: Option<&Stats>) -> String {
    match theirs {
        Some(t) => format!(
            "| {what} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {}/{} |",
            ours.median,
            ours.p99,
            t.median,
            t.p99,
            ours.median / t.median,
            ours.n,
            t.n
        ),
        None => format!(
            "| {what} | {:.1} | {:.1} | – | – | – | {} |",
            ours.median, ours.p99, ours.n
        ),
    }
}

/// The section this benchmark keeps in BENCHMARKS.md, replaced on each
/// full run (lab-bench keeps what is below its marker).
const SECTION: &str = "## Kernels (issue 18): academy kernels vs evcxr_jupyter";

/// Puts `section` (starting with [`SECTION`]) in BENCHMARKS.md, in place
/// of the last run's, or at the end.
fn write_section(section: &str) -> std::io::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)?;
    let text = match text.find(SECTION) {
        Some(start) => {
            let rest = &text[start + SECTION.len()..];
            let end = rest
                .find("\n## ")
                .map_or(text.len(), |i| start + SECTION.len() + i + 1);
            format!("{}{section}{}", &text[..start], &text[end..])
        }
        None => format!(
            "{}\n{section}",
            text.trim_end_matches('\n').to_owned() + "\n"
        ),
    };
    std::fs::write(path, text)
}

fn git(args: &[&str]) -> String {
    std::process::Command::new("git")
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (starts, trivial, warm) = if quick { (2, 50, 3) } else { (5, 500, 10) };
    let evcxr = std::env::var("BENCH_EVCXR_KERNEL").unwrap_or_else(|_| "rust".into());

    let mut start_candle = Vec::new();
    let mut start_rust = Vec::new();
    let mut start_evcxr = Vec::new();
    // The first cell right after ready: what a start leaves for later
    // (academy-rust's prelude, rust-analyzer's warm-up) shows here.
    let first_code = "let bench_x = 40 + 2; bench_x";
    let mut first_rust = Vec::new();
    let mut first_evcxr = Vec::new();
    for _ in 0..starts {
        let (k, t) = start("academy-candle").await;
        start_candle.push(t);
        k.stop().await;
        let (mut k, t) = start("academy-rust").await;
        start_rust.push(t);
        first_rust.push(run_cell(&mut k, first_code).await);
        k.stop().await;
        let (mut k, t) = start(&evcxr).await;
        start_evcxr.push(t);
        first_evcxr.push(run_cell(&mut k, first_code).await);
        k.stop().await;
    }

    // Trivial cell: academy-candle vs evcxr_jupyter (both warm).
    let (mut candle, _) = start("academy-candle").await;
    for _ in 0..20 {
        run_cell(&mut candle, "1").await;
    }
    let mut candle_cells = Vec::new();
    for _ in 0..trivial {
        candle_cells.push(run_cell(&mut candle, "1").await);
    }
    candle.stop().await;

    let warm_code = first_code;
    let (mut ours, _) = start("academy-rust").await;
    let (mut theirs, _) = start(&evcxr).await;
    for _ in 0..2 {
        run_cell(&mut ours, warm_code).await;
        run_cell(&mut theirs, warm_code).await;
    }
    let mut ours_warm = Vec::new();
    let mut theirs_warm = Vec::new();
    let mut theirs_trivial = Vec::new();
    for _ in 0..warm {
        ours_warm.push(run_cell(&mut ours, warm_code).await);
        theirs_warm.push(run_cell(&mut theirs, warm_code).await);
        theirs_trivial.push(run_cell(&mut theirs, "1").await);
    }
    ours.stop().await;
    theirs.stop().await;

    // A second kernel's `:dep candle-core` (notebook 02's line), after a
    // first kernel has filled the shared compile cache; then the first
    // cell that uses it.
    let dep = r#":dep candle-core = { version = "=0.11.1", default-features = false }"#;
    let use_dep = "let bench_t = candle_core::Tensor::ones(2, candle_core::DType::F32, \
                   &candle_core::Device::Cpu).unwrap(); bench_t.dims().len()";
    let (mut first, _) = start("academy-rust").await;
    run_cell(&mut first, dep).await;
    run_cell(&mut first, use_dep).await;
    first.stop().await;
    let (mut second, _) = start("academy-rust").await;
    run_cell(&mut second, "let bench_w = 1;").await;
    let dep_time = run_cell(&mut second, dep).await;
    let use_time = run_cell(&mut second, use_dep).await;
    second.stop().await;

    let mut table = vec![
        "| measurement | ours median ms | ours p99 ms | evcxr_jupyter median ms | evcxr p99 ms | ours ÷ evcxr | samples |".to_owned(),
        "|---|---|---|---|---|---|---|".to_owned(),
    ];
    let evcxr_start = stats(start_evcxr);
    table.push(row(
        "start to ready: academy-candle vs evcxr_jupyter",
        &stats(start_candle),
        Some(&evcxr_start),
    ));
    table.push(row(
        "start to ready: academy-rust vs evcxr_jupyter",
        &stats(start_rust),
        Some(&evcxr_start),
    ));
    table.push(row(
        "first cell right after ready: academy-rust vs evcxr_jupyter",
        &stats(first_rust),
        Some(&stats(first_evcxr)),
    ));
    table.push(row(
        "trivial cell `1`: academy-candle vs evcxr_jupyter",
        &stats(candle_cells),
        Some(&stats(theirs_trivial)),
    ));
    table.push(row(
        "warm Rust cell `let bench_x = 40 + 2; bench_x`: academy-rust vs evcxr_jupyter",
        &stats(ours_warm),
        Some(&stats(theirs_warm)),
    ));
    table.push(row(
        "second kernel's `:dep candle-core` (shared compile cache)",
        &stats(vec![dep_time]),
        None,
    ));
    table.push(row(
        "its first cell using candle-core",
        &stats(vec![use_time]),
        None,
    ));
    let table = table.join("\n");
    println!("{table}");
    if quick {
        return;
    }
    let machine = std::env::var("BENCH_MACHINE").unwrap_or_default();
    let section = format!(
        "{SECTION}\n\n\
         `scripts/bench-kernels`, {date}, commit {commit}; {machine}. Each kernel is launched \
         from its kernelspec and driven over ZeroMQ by the same Rust client; ours and \
         evcxr_jupyter 0.22 (its defaults: opt-level 2, no compile cache) alternate cell by \
         cell. Ratios below 1 mean ours is faster.\n\n{table}\n",
        date = std::env::var("BENCH_DATE").unwrap_or_else(|_| git(&["log", "-1", "--format=%cs"])),
        commit = git(&["rev-parse", "--short", "HEAD"]),
    );
    match write_section(&section) {
        Ok(()) => eprintln!("wrote BENCHMARKS.md ({SECTION})"),
        Err(e) => eprintln!("could not write BENCHMARKS.md: {e}"),
    }
}
