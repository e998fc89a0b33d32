//! `academy-kernel`: the kernel process Jupyter launches, and its installer.
//!
//! Only argument parsing and wiring live here; see the library for the rest.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kernel_runtime::launch::{self, Begin, LaunchChannel};
use kernel_runtime::{
    Language, candle, connection, device, executor::Executor, install, rust, server,
};

#[derive(Parser)]
#[command(
    name = "academy-kernel",
    version,
    about = "Academy Lab's Jupyter kernels: academy-rust and academy-candle"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the academy-rust kernel (Rust through evcxr).
    Rust {
        /// The connection file Jupyter wrote.
        #[arg(short = 'f', long = "connection-file")]
        connection_file: PathBuf,
    },
    /// Run the academy-candle kernel (Rhai with candle).
    Candle {
        /// The connection file Jupyter wrote.
        #[arg(short = 'f', long = "connection-file")]
        connection_file: PathBuf,
    },
    /// Run a notebook's code cells through a kernel (this binary) over ZeroMQ,
    /// printing their output; for hosts without Python's Jupyter clients.
    Execute {
        /// The .ipynb file.
        notebook: PathBuf,
    },
    /// Install the academy-rust and academy-candle kernelspecs.
    Install {
        /// Into the user's Jupyter data dir (the default).
        #[arg(long, group = "target")]
        user: bool,
        /// Into the active Python environment ($VIRTUAL_ENV or $CONDA_PREFIX).
        #[arg(long, group = "target")]
        sys_prefix: bool,
        /// Into PREFIX/share/jupyter.
        #[arg(long, group = "target", value_name = "PREFIX")]
        prefix: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    // evcxr re-executes this binary as its child process; the hook must run
    // before anything else and never returns in that child.
    evcxr::runtime_hook();
    let cli = Cli::parse();
    let (kernel, prepared) = match &cli.command {
        Command::Rust { .. } | Command::Candle { .. } => {
            let rust = matches!(cli.command, Command::Rust { .. });
            // A pooled academy-rust kernel makes its evcxr context while it
            // waits: seconds nobody then waits for. Only in a build whose
            // rust-analyzer ends all its threads (.cargo/config.toml).
            let prepare = || (rust && cfg!(no_salsa_async_drops)).then(rust::prepare);
            // SAFETY: no thread has been started yet (evcxr's hook returns
            // at once outside its child, and parsing starts none).
            match unsafe { launch::begin(prepare) } {
                Ok(Begin::Abandoned) => std::process::exit(0),
                Ok(Begin::Plain) => (None, None),
                Ok(Begin::Go(channel, prepared)) => (Some(channel), prepared.flatten()),
                Err(e) => {
                    init_tracing();
                    anyhow::bail!("the kernel cannot start: {e}")
                }
            }
        }
        _ => (None, None),
    };
    init_tracing();
    match cli.command {
        Command::Rust { connection_file } => {
            run_kernel(Language::Rust, connection_file, kernel, prepared)
        }
        Command::Candle { connection_file } => {
            run_kernel(Language::Candle, connection_file, kernel, None)
        }
        Command::Execute { notebook } => {
            let binary = std::env::current_exe().context("cannot find this executable's path")?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(kernel_runtime::notebook::execute(&notebook, &binary))?;
            Ok(())
        }
        Command::Install {
            user: _,
            sys_prefix,
            prefix,
        } => {
            let target = match (sys_prefix, prefix) {
                (true, _) => install::Target::SysPrefix,
                (false, Some(p)) => install::Target::Prefix(p),
                (false, None) => install::Target::User,
            };
            let binary = std::env::current_exe().context("cannot find this executable's path")?;
            for dir in install::install(&target, &binary)? {
                println!("Installed kernelspec in {}", dir.display());
            }
            Ok(())
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("ACADEMY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,academy_kernel=info,kernel_runtime=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ACADEMY_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// The orphan window the gateway gives a kernel (`ACADEMY_ORPHAN_TIMEOUT`,
/// in seconds): unset, the kernel serves until it is shut down.
fn orphan_timeout() -> anyhow::Result<Option<std::time::Duration>> {
    let Ok(text) = std::env::var("ACADEMY_ORPHAN_TIMEOUT") else {
        return Ok(None);
    };
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 1e9 => {
            Ok(Some(std::time::Duration::from_secs_f64(s)))
        }
        _ => anyhow::bail!(
            "ACADEMY_ORPHAN_TIMEOUT must be a number of seconds above 0, not {text:?}"
        ),
    }
}

fn run_kernel(
    language: Language,
    connection_file: PathBuf,
    channel: Option<LaunchChannel>,
    prepared: Option<Result<rust::Prepared, String>>,
) -> anyhow::Result<()> {
    let orphan_timeout = orphan_timeout()?;
    let connection = connection::read_connection_file(&connection_file)?;
    let choice = device::select();
    let device_line = choice.description.clone();
    tracing::info!(language = language.kernelspec_name(), device = %device_line, "starting kernel");
    let (spec, executor) = match language {
        Language::Rust => (
            rust::language_spec(),
            // Built before the sockets bind: evcxr takes seconds, and a
            // kernel that accepts requests it cannot answer that long
            // surprises strict clients.
            Executor::start("rust", move || rust::build(prepared))
                .and_then(|s| s.built())
                .map(|s| s.is_complete_by(rust::is_complete))
                .map_err(|e| anyhow::anyhow!("evcxr failed to start: {e}"))?,
        ),
        Language::Candle => (
            candle::language_spec(),
            // Built while the sockets bind: it takes a few milliseconds.
            Executor::start("candle", move || candle::build(choice))
                .map_err(|e| anyhow::anyhow!("the candle engine failed to start: {e}"))?,
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(server::run(server::KernelServer {
        connection,
        spec,
        device_line,
        executor,
        orphan_timeout,
        on_listening: channel.map(|c| Box::new(move || c.listening()) as Box<_>),
    }))?;
    // The engine thread may still be inside a cell; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(0);
}
