//! `lab`: the Academy Lab server and its admin commands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lab_gateway::config::{Config, ServeArgs, default_data_dir};
use lab_gateway::kernels::KernelManager;
use lab_gateway::kernelspecs::Specs;
use lab_gateway::store::{Role, Store};
use lab_gateway::{AppState, run};

#[derive(Parser)]
#[command(
    name = "lab",
    version,
    about = "Academy Lab: GPU notebooks for the academy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (local backend, SQLite in the data dir).
    Serve(ServeArgs),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user and print a new API token for them.
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "engineer")]
        role: Role,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, env = "LAB_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a new API token for a user and print it.
    Create {
        user: String,
        #[arg(long, default_value = "cli")]
        label: String,
        #[arg(long, env = "LAB_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Revoke a token, by its id or by the token itself.
    Revoke {
        token: String,
        #[arg(long, env = "LAB_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn open_store(data_dir: Option<PathBuf>) -> anyhow::Result<Store> {
    let dir = data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    Ok(Store::open(&dir.join("lab.db"))?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    role,
                    group,
                    data_dir,
                },
        } => {
            let store = open_store(data_dir)?;
            store.add_user(&name, role, group.as_deref())?;
            let (_, token) = store.create_token(&name, "initial")?;
            println!("{token}");
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    user,
                    label,
                    data_dir,
                },
        } => {
            let (_, token) = open_store(data_dir)?.create_token(&user, &label)?;
            println!("{token}");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { token, data_dir },
        } => {
            if open_store(data_dir)?.revoke_token(&token)? {
                println!("revoked");
                Ok(())
            } else {
                anyhow::bail!("no live token matches {token:?}")
            }
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("LAB_LOG").unwrap_or_else(|_| EnvFilter::new("info,zeromq=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LAB_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> anyhow::Result<()> {
    let data = &config.data_dir;
    for sub in ["users", "runtime"] {
        std::fs::create_dir_all(data.join(sub))
            .with_context(|| format!("cannot create {}", data.join(sub).display()))?;
    }
    let store = Store::open(&data.join("lab.db"))?;
    let first_start = store.user_count()? == 0;
    if first_start {
        store.add_user("admin", Role::Admin, None)?;
    }
    // A fresh login token at every start, as Jupyter prints one; the last one stops working.
    store.revoke_label("admin", "login")?;
    let (_, token) = store.create_token("admin", "login")?;

    let academy_kernel = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("academy-kernel")))
        .filter(|p| p.is_file());
    let specs = Specs::discover(&config.kernelspec_dirs, academy_kernel.as_deref());
    let launcher = Arc::new(scheduler::local::LocalLauncher::new(data.join("runtime")));
    let kernels = Arc::new(
        KernelManager::new(launcher, specs, store.clone(), data.join("users"))
            .with_limits(config.limits)
            .with_warm_pool(config.warm_pool.clone()),
    );
    kernels.reattach().await;
    {
        let kernels = kernels.clone();
        tokio::spawn(async move { kernels.fill_pool().await });
    }

    let listener = tokio::net::TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    let state = AppState {
        store,
        kernels: kernels.clone(),
        sessions: Default::default(),
        users_root: data.join("users"),
        no_auth: config.no_auth,
        started: chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
    };
    if config.no_auth {
        eprintln!("WARNING: --no-auth: this server is open to anyone who can reach {addr}");
    }
    if first_start {
        println!(
            "Created the data dir {} and the admin user.",
            data.display()
        );
    }
    println!("Academy Lab is running at http://{addr}/");
    println!("Log in with: http://{addr}/?token={token}");
    let info = serde_json::json!({"url": format!("http://{addr}/"), "token": token, "pid": std::process::id()});
    let info_path = data.join("runtime/lab-server.json");
    std::fs::write(&info_path, info.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&info_path, std::fs::Permissions::from_mode(0o600))?;
    }
    run(listener, state, shutdown_signal()).await?;
    kernels.shutdown_pool().await;
    tracing::info!("stopped; kernels keep running and are re-attached at the next start");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
