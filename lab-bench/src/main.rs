//! `lab-bench`: Academy Lab's gateway side by side with Jupyter Kernel
//! Gateway, in one run, on one machine, with the same kernels and the same
//! client, and a direct ZeroMQ baseline for what the gateways add.
//!
//! Run it through `scripts/bench`, which installs the reference in a venv,
//! builds release binaries and regenerates `BENCHMARKS.md`.

mod client;
mod direct;
mod report;
mod scenarios;
mod servers;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::client::Api;
use crate::report::{KindResults, Results};
use crate::scenarios::attempt;
use crate::servers::{Kind, Server, Setup};

/// Between two cold starts, for either server: the last kernel's exit and
/// clean-up are not counted in the next one's start.
const START_PAUSE: Duration = Duration::from_millis(300);

#[derive(Parser, Debug)]
#[command(about = "Benchmark Academy Lab's gateway against Jupyter Kernel Gateway")]
struct Args {
    /// The `lab` binary to measure (a release build).
    #[arg(long, default_value = "target/release/lab")]
    lab: PathBuf,
    /// A venv with jupyter_kernel_gateway, ipykernel and our kernelspecs.
    #[arg(long, default_value = ".bench-venv")]
    venv: PathBuf,
    /// A few seconds per scenario, to keep the harness working (CI).
    #[arg(long)]
    quick: bool,
    /// Where the markdown report goes (default BENCHMARKS.md, or none for `--only`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the raw results go, as JSON (`--render` reads it back).
    #[arg(long, default_value = "BENCHMARKS.json")]
    json: PathBuf,
    /// Kernels to measure P1–P3 with.
    #[arg(long, value_delimiter = ',', default_value = "python3,academy-candle")]
    kernels: Vec<String>,
    /// Concurrent clients for P1 under load, each on its own kernel.
    #[arg(long)]
    clients: Option<usize>,
    /// Idle websockets to hold for P5 (repeatable list).
    #[arg(long, value_delimiter = ',')]
    held: Option<Vec<usize>>,
    /// Concurrent academy-candle kernels to start for P5.
    #[arg(long)]
    running_kernels: Option<usize>,
    /// Measure nothing: render the markdown again from a results JSON of an
    /// earlier run (after a change to the report's layout).
    #[arg(long)]
    render: Option<PathBuf>,
    /// Fail (exit 1) if any scenario failed, instead of reporting it (CI).
    #[arg(long)]
    strict: bool,
    /// Only these scenarios (p1, p2, p3, p5); a partial run writes no BENCHMARKS.md
    /// unless `--out` is given.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
}

impl Args {
    fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    }
}

/// How much of each scenario to run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub warmup: usize,
    pub round_trips: usize,
    pub clients: usize,
    pub load_seconds: u64,
    pub lines: u32,
    pub starts: usize,
    pub held: Vec<usize>,
    pub held_on_kernels: usize,
    pub running_kernels: usize,
    pub quick: bool,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let mut p = if args.quick {
            Plan {
                warmup: 5,
                round_trips: 30,
                clients: 4,
                load_seconds: 1,
                lines: 300,
                starts: 1,
                held: vec![50],
                held_on_kernels: 2,
                running_kernels: 4,
                quick: true,
            }
        } else {
            Plan {
                warmup: 50,
                round_trips: 1000,
                clients: 100,
                load_seconds: 10,
                lines: 50_000,
                // Twenty, so a few slow starts do not move the median.
                starts: 20,
                held: vec![1000, 10_000],
                held_on_kernels: 100,
                running_kernels: 1000,
                quick: false,
            }
        };
        if let Some(c) = args.clients {
            p.clients = c;
        }
        if let Some(h) = &args.held {
            p.held = h.clone();
        }
        if let Some(k) = args.running_kernels {
            p.running_kernels = k;
        }
        p
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(json) = &args.render {
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let results: Results = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab-bench result", json.display()))?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("BENCHMARKS.md"));
        write_report(&out, &report::markdown(&results))?;
        eprintln!("rendered {} from {}", out.display(), json.display());
        return Ok(());
    }
    let plan = Plan::new(&args);
    let venv = std::path::absolute(&args.venv)?;
    let setup = Setup {
        lab: std::path::absolute(&args.lab)?,
        venv: venv.clone(),
        warm_pool: 0,
    };
    // The direct baseline finds kernelspecs the way the servers do.
    // SAFETY: set before any other thread of ours reads the environment.
    unsafe {
        std::env::set_var("JUPYTER_PATH", venv.join("share/jupyter"));
        std::env::set_var(
            "PATH",
            format!(
                "{}:{}",
                venv.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    let mut results = Results::new(&plan, &setup).await;

    eprintln!("direct ZeroMQ baseline");
    for k in args
        .kernels
        .iter()
        .filter(|_| args.runs("p1") || args.runs("p2"))
    {
        let rt = attempt(
            &format!("direct, {k}: round trips"),
            scenarios::direct_round_trips(k, plan.warmup, plan.round_trips),
        )
        .await;
        let st = attempt(
            &format!("direct, {k}: streaming"),
            scenarios::direct_streaming(k, plan.lines),
        )
        .await;
        results.direct.insert(k.clone(), (rt, st));
    }

    for kind in [Kind::Lab, Kind::KernelGateway] {
        eprintln!("{}", kind.label());
        let server = Server::start(kind, &setup)
            .await
            .with_context(|| format!("starting {}", kind.label()))?;
        let r = measure(&server, &args, &plan).await;
        server.stop().await;
        results.servers.push((kind, r));
    }

    if args.runs("p3") {
        eprintln!("Academy Lab with a warm pool");
        let pooled = Setup {
            warm_pool: 2,
            ..setup.clone()
        };
        let server = Server::start(Kind::Lab, &pooled).await?;
        let api = Api::new(&server);
        let refill = Duration::from_secs(120);
        results.warm_start = attempt(
            "Academy Lab, academy-candle: start from the warm pool",
            scenarios::start_to_idle_pooled(&api, "academy-candle", plan.starts, 2, refill),
        )
        .await;
        // A pooled academy-rust kernel makes its evcxr context (toolchain
        // probes, first build, std's analysis) before its handover; each
        // start waits for the refill, which takes seconds.
        results.warm_start_rust = attempt(
            "Academy Lab, academy-rust: start from the warm pool",
            scenarios::start_to_idle_pooled(&api, "academy-rust", plan.starts.min(10), 2, refill),
        )
        .await;
        server.stop().await;
    }

    results.failures =
        std::mem::take(&mut *scenarios::FAILED.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&results)?)?;
    let md = report::markdown(&results);
    println!("{md}");
    let out = match (&args.out, &args.only) {
        (Some(out), _) => Some(out.clone()),
        (None, None) => Some(PathBuf::from("BENCHMARKS.md")),
        (None, Some(_)) => None,
    };
    if let Some(out) = out {
        write_report(&out, &md)?;
        eprintln!("wrote {}", out.display());
    }
    eprintln!("wrote {}", args.json.display());
    let failed = results.failures.len();
    if args.strict && failed > 0 {
        anyhow::bail!("{failed} scenarios failed (see above)");
    }
    Ok(())
}

/// The server's memory 6 s after a stage: what it keeps, not what it is
/// still letting go of (Academy Lab gives freed memory back at most every 5 s).
async fn stage(server: &Server, api: &Api, after: &str) -> report::Stage {
    tokio::time::sleep(Duration::from_secs(6)).await;
    report::Stage {
        after: after.to_owned(),
        rss_mib: server.rss_mib(),
        replay_mib: api
            .metric("lab_replay_buffer_bytes")
            .await
            .map(|b| b / (1024.0 * 1024.0)),
    }
}

async fn measure(server: &Server, args: &Args, plan: &Plan) -> KindResults {
    let api = Api::new(server);
    let on = server.kind.label();
    let mut r = KindResults::default();
    r.rss_stages.push(stage(server, &api, "started").await);
    for k in &args.kernels {
        let mut entry = report::PerKernel::default();
        if args.runs("p1") {
            entry.one = attempt(
                &format!("{on}, {k}: round trips, 1 client"),
                scenarios::round_trips(&api, k, plan.warmup, plan.round_trips),
            )
            .await;
            entry.many = attempt(
                &format!("{on}, {k}: round trips, {} clients", plan.clients),
                scenarios::concurrent_round_trips(
                    &api,
                    k,
                    plan.clients,
                    Duration::from_secs(plan.load_seconds),
                ),
            )
            .await;
        }
        if args.runs("p2") {
            entry.stream = attempt(
                &format!("{on}, {k}: streaming {} lines", plan.lines),
                scenarios::streaming(&api, k, plan.lines),
            )
            .await;
        }
        if args.runs("p3") {
            entry.cold = attempt(
                &format!("{on}, {k}: cold start to idle"),
                scenarios::start_to_idle(&api, k, plan.starts, START_PAUSE),
            )
            .await;
        }
        r.per_kernel.insert(k.clone(), entry);
        r.rss_stages
            .push(stage(server, &api, &format!("P1–P3 {k}")).await);
    }
    if !args.runs("p5") {
        return r;
    }
    // Kernels first, so the RSS it reports is not what the websockets left behind.
    r.kernels = attempt(
        &format!("{on}: {} running kernels", plan.running_kernels),
        scenarios::running_kernels(server, &api, plan.running_kernels),
    )
    .await;
    r.rss_stages.push(stage(server, &api, "P5 kernels").await);
    for &n in &plan.held {
        if let Some(h) = attempt(
            &format!("{on}: {n} idle websockets"),
            scenarios::idle_connections(server, &api, plan.held_on_kernels, n),
        )
        .await
        {
            r.held.push(h);
        }
        r.rss_stages
            .push(stage(server, &api, &format!("P5 {n} websockets")).await);
    }
    r
}

/// Where the part of BENCHMARKS.md that this harness does not write begins:
/// other benchmarks' sections (`scripts/bench-grading`'s), kept as they are
/// when the report above them is rewritten.
const KEPT: &str = "<!-- lab-bench keeps everything below: other benchmarks' sections -->";

/// Writes the report to `out`, keeping what followed [`KEPT`] there (read
/// only from a regular file: `--out /dev/stdout` must not wait for input).
fn write_report(out: &std::path::Path, md: &str) -> Result<()> {
    let kept = std::fs::metadata(out)
        .is_ok_and(|m| m.is_file())
        .then(|| std::fs::read_to_string(out).ok())
        .flatten()
        .and_then(|old| old.find(KEPT).map(|at| old[at..].to_owned()));
    let text = match kept {
        Some(tail) => format!("{}\n\n{tail}", md.trim_end()),
        None => md.to_owned(),
    };
    std::fs::write(out, text)?;
    Ok(())
}
