//! `lab simulate`: replays an academy term through admission offline, to
//! size quotas and the cluster; touches no database and no GPU.

use std::path::PathBuf;

use anyhow::Context as _;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The cluster, e.g. "16x8 H100-80GB; 2x7 1g.10gb", or a file holding that.
    #[arg(long)]
    cluster: String,
    /// The term, a TOML file (see examples/capacity/academy-term.toml).
    #[arg(long)]
    workload: PathBuf,
    /// Also write the hourly chart (SVG) here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let SimulateArgs {
        cluster,
        workload,
        chart,
        json,
    } = args;
    let spec = match std::fs::read_to_string(&cluster) {
        Ok(text) => text,
        Err(_) => cluster,
    };
    let cluster = scheduler::Cluster::parse(&spec)?;
    let text = std::fs::read_to_string(&workload)
        .with_context(|| format!("cannot read {}", workload.display()))?;
    let workload = scheduler::simulate::Workload::from_toml(&text)?;
    let started = std::time::Instant::now();
    eprintln!(
        "simulating {} weeks for {} users on {} GPUs…",
        workload.weeks,
        workload.users(),
        cluster.gpus()
    );
    let report = scheduler::simulate::simulate(cluster, &workload);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
        println!("simulated in {:.2} s", started.elapsed().as_secs_f64());
    }
    if let Some(path) = chart {
        std::fs::write(&path, report.svg())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
