//! `lab execute`: runs a notebook through a gateway, as papermill does,
//! and writes its outputs back.

use std::path::PathBuf;

use anyhow::Context as _;

#[derive(clap::Args)]
pub struct ExecuteArgs {
    notebook: PathBuf,
    /// The gateway, e.g. http://127.0.0.1:8888.
    #[arg(long, env = "LAB_URL", default_value = "http://127.0.0.1:8888")]
    url: String,
    #[arg(long, env = "LAB_TOKEN")]
    token: String,
    /// The kernelspec (default: the notebook's).
    #[arg(long)]
    kernel: Option<String>,
    /// GPUs to ask for.
    #[arg(long)]
    gpus: Option<u32>,
    /// Where to write the executed notebook (default: in place).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Seconds a cell may run.
    #[arg(long, default_value_t = 600)]
    cell_timeout: u64,
    /// Run every cell even after one fails.
    #[arg(long)]
    allow_errors: bool,
}

pub(super) fn run(args: ExecuteArgs) -> anyhow::Result<()> {
    let ExecuteArgs {
        notebook,
        url,
        token,
        kernel,
        gpus,
        output,
        cell_timeout,
        allow_errors,
    } = args;
    let text = std::fs::read_to_string(&notebook)
        .with_context(|| format!("cannot read {}", notebook.display()))?;
    let mut nb: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", notebook.display()))?;
    let opts = crate::client::RunOptions {
        url,
        token,
        kernel,
        gpus,
        cell_timeout: std::time::Duration::from_secs(cell_timeout),
        allow_errors,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(crate::client::run_notebook(&opts, &mut nb, |line| {
        eprintln!("{line}")
    }))?;
    let out = output.unwrap_or(notebook);
    std::fs::write(&out, serde_json::to_string_pretty(&nb)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "ran {} cells in {:.1} s; wrote {}",
        summary.cells_run,
        summary.seconds,
        out.display()
    );
    if let Some((cell, why)) = summary.failed {
        anyhow::bail!("cell {cell} failed: {why}");
    }
    Ok(())
}
