//! `lab`: the Academy Lab server and its admin commands.
//!
//! Only wiring: flags (`lab_gateway::cli`, where the admin commands live)
//! and, for `lab serve`, the store, backend, scheduling and kernel manager
//! put together and handed to `lab_gateway::run`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use lab_gateway::cli::{Cli, LOGIN_CODE_TTL, private_dir};
use lab_gateway::config::{Backend, Config, GpuSource, ServeArgs};
use lab_gateway::kernels::KernelManager;
use lab_gateway::kernelspecs::Specs;
use lab_gateway::scheduling::Scheduling;
use lab_gateway::store::{Role, Store};
use lab_gateway::{AppState, run};
use launch::sandbox::{Sandbox, SandboxMode};

fn main() -> anyhow::Result<()> {
    // Everything the gateway creates (the database, logs, runtime files,
    // connection files, notebooks) is its own from the moment it exists:
    // 0700 folders and 0600 files, not chmod-ed after the fact.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    init_tracing();
    lab_gateway::cli::run(cli, serve)
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
    // The first start publishes the examples: a getting-started course and
    // a demo course of graded assignments.
    match lab_gateway::seed::first_start(&store, &data.join("users"), "admin") {
        Ok(true) => println!(
            "Published the examples: course {:?} (notebooks) and course {:?} (graded assignments)",
            lab_gateway::seed::GETTING_STARTED,
            lab_gateway::seed::DEMO
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot publish the examples"),
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
        Backend::Local => local_launcher(&config, data)?,
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
        sessions,
        no_auth: config.no_auth,
        caps: config.caps,
        login: config.login,
        sso: Arc::new(lab_gateway::sso::Sso::new(config.oidc.clone())),
        channels: Arc::new(lab_gateway::ws::Channels::new(
            config.limits,
            Arc::new(lab_gateway::replay::Budget::new(config.caps.replay)),
        )),
        ..AppState::new(store, kernels.clone(), data.join("users"))
    }
    .with_grading(config.grading.parallel, config.grading.group.clone())
    .with_code_runs(config.competitions.parallel);
    // Gradings a stopped gateway left running go back in the queue.
    state.grader.start().await;
    state.code_runs.start().await;
    tokio::spawn(lab_gateway::memory::give_back_freed());
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

/// The local backend, confined as `--sandbox` says (a warm-pool kernel
/// too: it is confined at its handover, as a cold one before exec).
fn local_launcher(
    config: &Config,
    data: &std::path::Path,
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
    // `lab serve` starts no process but its kernels, so it may adopt what
    // a kernel leaves running when it exits, and kill it then.
    let launcher = launch::local::LocalLauncher::new(data.join("runtime"))
        .with_sandbox(sandbox)
        .adopting_orphans()
        .context("cannot become the subreaper of the kernels' processes")?;
    Ok(Arc::new(launcher))
}
