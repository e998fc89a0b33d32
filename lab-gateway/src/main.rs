//! `lab`: the Academy Lab server and its admin commands.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lab_gateway::config::{Backend, Config, GpuSource, ServeArgs, default_data_dir};
use lab_gateway::kernels::KernelManager;
use lab_gateway::kernelspecs::Specs;
use lab_gateway::scheduling::Scheduling;
use lab_gateway::store::{Role, Store};
use lab_gateway::{AppState, run};
use launch::sandbox::{Sandbox, SandboxMode};

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
    /// Manage groups (cohorts, teams) and their GPU quotas.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
        #[arg(long, env = "LAB_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Run a notebook through a gateway (like papermill), writing its outputs.
    Execute {
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
    },
    /// Replay an academy term through admission, to size quotas and the cluster.
    Simulate {
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
    },
    /// Kubernetes helpers.
    K8s {
        #[command(subcommand)]
        command: K8sCommand,
    },
    /// Show, import and export every quota; set a user's own caps.
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
        #[arg(long, env = "LAB_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create a group, e.g. `lab group add cohort-a --guaranteed H100-80GB=16 --borrow '*=8' --max-gpus 1`.
    Add {
        name: String,
        #[command(flatten)]
        flags: lab_gateway::quota_cli::GroupFlags,
    },
    /// Change a group's quota (only the flags given).
    Set {
        name: String,
        #[command(flatten)]
        flags: lab_gateway::quota_cli::GroupFlags,
    },
    /// List the groups and their members.
    List,
    /// Delete a group (its members fall back to the default group).
    Remove { name: String },
    /// Put a user in a group (or, without GROUP, in none).
    Member { user: String, group: Option<String> },
}

#[derive(Subcommand)]
enum K8sCommand {
    /// Print Kueue ResourceFlavors, ClusterQueues and LocalQueues matching
    /// the quota config (the `gpus` cluster and every group's quota), for
    /// `kubectl apply -f -`.
    RenderQuotas {
        /// CPU each group's ClusterQueue covers.
        #[arg(long, default_value = "1000")]
        cpu: String,
        /// Memory each group's ClusterQueue covers.
        #[arg(long, default_value = "4Ti")]
        memory: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// Print every quota (TOML, YAML or JSON).
    Export {
        #[arg(long, default_value = "toml")]
        format: String,
    },
    /// Replace every quota with a TOML or YAML file (by extension).
    Import { file: PathBuf },
    /// Set a user's own caps, over their group's.
    User {
        name: String,
        #[command(flatten)]
        flags: lab_gateway::quota_cli::UserFlags,
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
    /// Print a login URL with a new one-time code (valid 10 minutes) for a
    /// user of the running server, e.g. when the one printed at start expired.
    LoginUrl {
        #[arg(default_value = "admin")]
        user: String,
        #[arg(long, env = "LAB_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// How long a printed login code works; it also works only once.
const LOGIN_CODE_TTL: Duration = Duration::from_secs(600);

fn open_store(data_dir: Option<PathBuf>) -> anyhow::Result<Store> {
    let dir = data_dir.unwrap_or_else(default_data_dir);
    private_dir(&dir)?;
    Ok(Store::open(&dir.join("lab.db"))?)
}

fn main() -> anyhow::Result<()> {
    // Everything the gateway creates (the database, logs, runtime files,
    // connection files, notebooks) is its own from the moment it exists:
    // 0700 folders and 0600 files, not chmod-ed after the fact.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
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
        Command::Group { command, data_dir } => {
            use lab_gateway::quota_cli as q;
            let store = open_store(data_dir)?;
            match command {
                GroupCommand::Add { name, flags } => {
                    let g = q::put_group(&store, &name, &flags, true)?;
                    println!("{}", serde_json::to_string_pretty(&g)?);
                }
                GroupCommand::Set { name, flags } => {
                    let g = q::put_group(&store, &name, &flags, false)?;
                    println!("{}", serde_json::to_string_pretty(&g)?);
                }
                GroupCommand::List => {
                    let quotas = q::load(&store)?;
                    let users = store.users()?;
                    for g in &quotas.groups {
                        let members: Vec<&str> = users
                            .iter()
                            .filter(|u| u.group.as_deref() == Some(&g.name))
                            .map(|u| u.name.as_str())
                            .collect();
                        println!(
                            "{}\tweight {}\tguaranteed {:?}\tborrow {:?}\tmembers: {}",
                            g.name,
                            g.weight,
                            g.guaranteed,
                            g.borrow_limit
                                .iter()
                                .map(|(m, a)| format!("{m}={a}"))
                                .collect::<Vec<_>>(),
                            members.join(", ")
                        );
                    }
                }
                GroupCommand::Remove { name } => q::remove_group(&store, &name)?,
                GroupCommand::Member { user, group } => {
                    if let Some(g) = &group {
                        scheduler::quota::validate_name(g)?;
                    }
                    store.set_user_group(&user, group.as_deref())?
                }
            }
            Ok(())
        }
        Command::Execute {
            notebook,
            url,
            token,
            kernel,
            gpus,
            output,
            cell_timeout,
            allow_errors,
        } => {
            let text = std::fs::read_to_string(&notebook)
                .with_context(|| format!("cannot read {}", notebook.display()))?;
            let mut nb: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", notebook.display()))?;
            let opts = lab_gateway::client::RunOptions {
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
            let summary =
                runtime.block_on(lab_gateway::client::run_notebook(&opts, &mut nb, |line| {
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
        Command::K8s {
            command: K8sCommand::RenderQuotas { cpu, memory, serve },
        } => {
            let config = Config::load(&serve)?;
            let kube = match &config.backend {
                Backend::Kubernetes(k) => (**k).clone(),
                Backend::Local => launch::kube::KubeConfig::default(),
            };
            let cluster = match &config.gpus {
                GpuSource::Modelled(c) => c.clone(),
                _ => anyhow::bail!(
                    "render-quotas needs the cluster's GPUs in `gpus` (e.g. \"16x8 H100-80GB; 2x7 1g.10gb\"), not auto-detection"
                ),
            };
            let store = open_store(Some(config.data_dir.clone()))?;
            let quotas = lab_gateway::quota_cli::load(&store)?;
            let objects = launch::kube::kueue::render(
                &kube,
                &cluster,
                &quotas,
                &launch::kube::kueue::CpuMemory { cpu, memory },
            );
            print!("{}", launch::kube::kueue::to_yaml(&objects)?);
            Ok(())
        }
        Command::Simulate {
            cluster,
            workload,
            chart,
            json,
        } => {
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
        Command::Quota { command, data_dir } => {
            use lab_gateway::quota_cli as q;
            let store = open_store(data_dir)?;
            match command {
                QuotaCommand::Export { format } => print!("{}", q::export(&store, &format)?),
                QuotaCommand::Import { file } => {
                    let quotas = q::import(&store, &file)?;
                    println!(
                        "imported {} groups and {} users",
                        quotas.groups.len(),
                        quotas.users.len()
                    );
                }
                QuotaCommand::User { name, flags } => {
                    let u = q::set_user(&store, &name, &flags)?;
                    println!("{}", serde_json::to_string_pretty(&u)?);
                }
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::LoginUrl { user, data_dir },
        } => {
            let dir = data_dir.unwrap_or_else(default_data_dir);
            let code = open_store(Some(dir.clone()))?.create_login_code(&user, LOGIN_CODE_TTL)?;
            let url = std::fs::read(dir.join("runtime/lab-server.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["url"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "/".into());
            println!("{url}?code={code}");
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

/// Creates `dir` (and its parents) if needed and makes it the gateway's
/// alone (0700), also when an older version left it open to others.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

async fn serve_async(config: Config) -> anyhow::Result<()> {
    let data = &config.data_dir;
    private_dir(data)?;
    for sub in ["users", "runtime"] {
        private_dir(&data.join(sub))?;
    }
    let store = Store::open(&data.join("lab.db"))?;
    // The first start creates the admin, also when `lab user add` ran before it.
    let created_admin = store.user("admin")?.is_none();
    if created_admin {
        store.add_user("admin", Role::Admin, None)?;
    }
    // A fresh login token at every start, as Jupyter prints one; the last one stops working.
    store.revoke_label("admin", "login")?;
    let (_, token) = store.create_token("admin", "login")?;

    let academy_kernel = match &config.backend {
        // Kernel pods run the kernel image's binary.
        Backend::Kubernetes(_) => Some(PathBuf::from(launch::kube::pod::KERNEL_BINARY)),
        Backend::Local => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("academy-kernel")))
            .filter(|p| p.is_file()),
    };
    let specs = Specs::discover(&config.kernelspec_dirs, academy_kernel.as_deref());
    let cluster = match &config.gpus {
        GpuSource::Detect => scheduler::Cluster::detect(
            &std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        ),
        GpuSource::None => scheduler::Cluster::default(),
        GpuSource::Modelled(c) => c.clone(),
    };
    for pool in &cluster.pools {
        println!(
            "GPUs: {} × {}{}",
            pool.gpus(),
            pool.model,
            if pool.real || matches!(config.backend, Backend::Kubernetes(_)) {
                ""
            } else {
                " (modelled: kernels run on CPU)"
            }
        );
    }
    if cluster.pools.is_empty() {
        println!("GPUs: none (kernels run on CPU)");
    }
    // Utilisation is read for this machine's own GPUs only.
    let monitor = if cluster.pools.iter().any(|p| p.real) {
        let m = scheduler::inventory::GpuMonitor::open();
        if m.available() {
            println!("GPU utilisation: read through NVML");
        }
        m
    } else {
        scheduler::inventory::GpuMonitor::none()
    };
    let scheduling = Arc::new(
        Scheduling::new(cluster, store.clone(), config.tuning, config.roles)?.with_monitor(monitor),
    );
    let mut warm_pool = config.warm_pool.clone();
    let launcher: Arc<dyn launch::Launcher> = match &config.backend {
        Backend::Local => local_launcher(&config, data, &mut warm_pool)?,
        Backend::Kubernetes(k) => {
            println!(
                "Kernels: Kubernetes pods of {} in {}",
                k.kernel_image,
                k.namespace_per_user.as_deref().unwrap_or(&k.namespace)
            );
            if !warm_pool.is_empty() {
                println!("Warm pool: off with the kubernetes backend");
                warm_pool.clear();
            }
            Arc::new(
                launch::kube::KubeLauncher::from_env((**k).clone())
                    .await
                    .context("cannot reach the Kubernetes API")?,
            )
        }
    };
    let kernels = Arc::new(
        KernelManager::new(launcher.clone(), specs, store.clone(), data.join("users"))
            .with_scheduling(scheduling.clone())
            .with_limits(config.limits)
            .with_message_limits(config.caps.messages)
            .with_queue_wait(config.queue_wait)
            .with_cull(config.cull)
            .with_orphan_timeout(config.orphan_timeout)
            .with_warm_pool(warm_pool)
            .with_answer_after(match &config.backend {
                Backend::Kubernetes(k) => k.answer_after.0,
                Backend::Local => Duration::from_secs(20),
            }),
    );
    scheduling.seed_budgets(&store.users()?, lab_gateway::scheduling::now_ms());
    kernels.reattach().await;
    let known: std::collections::HashSet<uuid::Uuid> = kernels.all().iter().map(|k| k.id).collect();
    match launcher.adopt(&known).await {
        Ok(stopped) if !stopped.is_empty() => {
            println!(
                "Kernels: stopped {} orphaned kernel(s) of an earlier gateway",
                stopped.len()
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot look for orphaned kernels"),
    }
    let running: Vec<uuid::Uuid> = kernels.all().iter().map(|k| k.id).collect();
    let closed = store.ledger_close_except(&running, lab_gateway::scheduling::now_ms())?;
    if closed > 0 {
        tracing::info!(
            closed,
            "closed the usage of kernels that ended while the gateway was down"
        );
    }
    let sessions = Arc::new(lab_gateway::sessions::Sessions::persistent(store.clone()));
    sessions.restore(&kernels);
    kernels.start_background();
    kernels.requeue().await;
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
        sessions,
        users_root: data.join("users"),
        no_auth: config.no_auth,
        started: chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
        caps: config.caps,
        blocking: Default::default(),
        replay: Arc::new(lab_gateway::replay::Budget::new(config.caps.replay)),
    };
    if config.no_auth {
        eprintln!("WARNING: --no-auth: this server is open to anyone who can reach {addr}");
    }
    if created_admin {
        println!("Created the admin user in {}.", data.display());
    }
    println!("Academy Lab is running at http://{addr}/");
    // The admin's API token goes only to this 0600 file (scripts and tests
    // read it there); what is printed, and so what logs keep, is a one-time
    // code that logs a browser in once, within LOGIN_CODE_TTL.
    let info = serde_json::json!({"url": format!("http://{addr}/"), "token": token, "pid": std::process::id()});
    write_private(
        &data.join("runtime/lab-server.json"),
        info.to_string().as_bytes(),
    )?;
    let code = state.store.create_login_code("admin", LOGIN_CODE_TTL)?;
    println!(
        "Log in with: http://{addr}/?code={code}  (once, within {} minutes; `lab token login-url` makes another)",
        LOGIN_CODE_TTL.as_secs() / 60
    );
    run(listener, state, shutdown_signal()).await?;
    kernels.shutdown_pool().await;
    // A clean stop frees the local kernels (and their GPUs), unless asked to
    // keep them for a restart; kernel pods outlive a gateway pod's rollout.
    if config.keep_kernels || !matches!(config.backend, Backend::Local) {
        tracing::info!("stopped; kernels keep running and are re-attached at the next start");
    } else {
        let stopped = kernels.shutdown_all().await;
        tracing::info!(
            kernels = stopped,
            "stopped, with its kernels (--keep-kernels keeps them for the next start)"
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` through a file created 0600 (never readable by
/// others, not even for a moment), then renamed over `path`: a reader sees
/// the old file or the whole new one.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
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

/// The local backend, confined as `--sandbox` says; clears the warm pool
/// when kernels are confined at all (a prespawned kernel has no user yet,
/// so it could not be confined to one).
fn local_launcher(
    config: &Config,
    data: &std::path::Path,
    warm_pool: &mut std::collections::BTreeMap<String, usize>,
) -> anyhow::Result<Arc<dyn launch::Launcher>> {
    let sandbox = launch::sandbox::Sandbox::new(config.sandbox, data)
        .with_connect_ports(config.sandbox_connect_ports.clone())
        .with_read_paths(config.sandbox_read_paths.clone());
    let abi = Sandbox::abi();
    let linux = Sandbox::linux_release();
    let found = abi.map_or("no Landlock".to_owned(), |a| format!("Landlock ABI {a}"));
    match config.sandbox {
        SandboxMode::Off => println!(
            "Kernels: NOT confined (--sandbox off): {}; the kernel keys in lab.db are encrypted, but with a key file in the data dir that they can read too",
            Sandbox::losses(None)[0]
        ),
        _ if Sandbox::supported() => println!(
            "Kernels: confined (Landlock ABI {}, seccomp) to the system's files and their user's, their own GPUs and ports (outbound TCP to ports {:?})",
            abi.unwrap_or_default(),
            config.sandbox_connect_ports
        ),
        SandboxMode::Require => anyhow::bail!(
            "kernels cannot be confined as promised: this Linux ({linux}) has {found}, and the sandbox needs Landlock ABI {wanted} (Linux 6.12 or later). \
             To start anyway with less isolation: --sandbox best-effort ({lost}), or --sandbox off ({off})",
            wanted = Sandbox::abi_wanted(),
            lost = Sandbox::losses(abi).join("; "),
            off = Sandbox::losses(None)[0],
        ),
        SandboxMode::BestEffort => println!(
            "Kernels: best-effort sandbox, this Linux ({linux}) has {found} of the ABI {} wanted, so {}",
            Sandbox::abi_wanted(),
            Sandbox::losses(abi).join("; ")
        ),
    }
    if config.sandbox != SandboxMode::Off && Sandbox::abi().is_some() && !warm_pool.is_empty() {
        println!(
            "Warm pool: off, because a prespawned kernel cannot be confined to a user it does not know yet (use --sandbox off to keep it)"
        );
        warm_pool.clear();
    }
    Ok(Arc::new(
        launch::local::LocalLauncher::new(data.join("runtime")).with_sandbox(sandbox),
    ))
}
