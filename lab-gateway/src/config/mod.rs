//! Configuration: flags, then `LAB_*` environment variables, then a TOML file.
//!
//! clap reads flags and the environment; the file (`--config`, or
//! `<data-dir>/lab.toml` when present) fills what neither set.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;

mod limits;
mod login;
mod oidc;
mod settings;

pub use limits::{Limits, LimitsFile};
pub use login::{LoginFile, LoginPolicy};
pub use oidc::{OidcFile, OidcProvider};

pub use settings::{
    BudgetLimits, CullPolicy, DEFAULT_ORPHAN_TIMEOUT, MessageLimits, RateLimits, RoleLimits,
};

/// `lab serve` settings, as flags and `LAB_*` variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LAB_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "LAB_PORT")]
    pub port: Option<u16>,
    /// Where the database, notebooks and runtime files live.
    #[arg(long, env = "LAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A TOML config file.
    #[arg(long, env = "LAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve without authentication (loopback only).
    #[arg(long, env = "LAB_NO_AUTH")]
    pub no_auth: bool,
    /// Output messages per second a client may receive before output is dropped.
    #[arg(long, env = "LAB_IOPUB_MSG_RATE_LIMIT")]
    pub iopub_msg_rate_limit: Option<f64>,
    /// Output bytes per second a client may receive before output is dropped.
    #[arg(long, env = "LAB_IOPUB_DATA_RATE_LIMIT")]
    pub iopub_data_rate_limit: Option<f64>,
    /// Ready kernels to keep per kernelspec, e.g. `academy-candle=2` (repeatable).
    #[arg(long = "warm-pool", env = "LAB_WARM_POOL", value_delimiter = ',', value_parser = parse_pool)]
    pub warm_pool: Vec<(String, usize)>,
    /// Extra Jupyter data dirs to search for kernelspecs.
    #[arg(
        long = "kernelspec-dir",
        env = "LAB_KERNELSPEC_DIRS",
        value_delimiter = ':'
    )]
    pub kernelspec_dirs: Vec<PathBuf>,
    /// GPUs to hand out: `auto` (found through the CUDA driver), `none`, or a
    /// modelled cluster such as `16x8 H100-80GB; 2x7 1g.10gb`.
    #[arg(long, env = "LAB_GPUS")]
    pub gpus: Option<String>,
    /// Seconds a start that must queue for a GPU waits before answering 202.
    #[arg(long, env = "LAB_QUEUE_WAIT")]
    pub queue_wait: Option<f64>,
    /// Idle time after which a GPU kernel is culled (`30m`, `off`).
    #[arg(long, env = "LAB_CULL_IDLE_GPU", value_parser = parse_limit)]
    pub cull_idle_gpu: Option<Limit>,
    /// Idle time after which a CPU kernel is culled (`2h`, `off`).
    #[arg(long, env = "LAB_CULL_IDLE_CPU", value_parser = parse_limit)]
    pub cull_idle_cpu: Option<Limit>,
    /// Runtime after which any kernel, even a busy one, is stopped (`off`).
    #[arg(long, env = "LAB_CULL_MAX_RUNTIME", value_parser = parse_limit)]
    pub cull_max_runtime: Option<Limit>,
    /// How long clients are warned before a cull (`60s`).
    #[arg(long, env = "LAB_CULL_WARNING", value_parser = parse_limit)]
    pub cull_warning: Option<Limit>,
    /// Where kernels run: `local` (processes here) or `kubernetes` (one pod
    /// each; settings in lab.toml's `[kubernetes]`).
    #[arg(long, env = "LAB_BACKEND")]
    pub backend: Option<String>,
    /// How local kernels are confined: `require` (the default: refuse to
    /// start without Landlock ABI 6), `best-effort` (confine with what this
    /// Linux has, saying what is lost), `off`.
    #[arg(long, env = "LAB_SANDBOX")]
    pub sandbox: Option<launch::sandbox::SandboxMode>,
    /// TCP ports confined kernels may connect to, comma-separated (default
    /// `80,443`); all others, other kernels' among them, are closed to them.
    #[arg(long, env = "LAB_SANDBOX_CONNECT_PORTS", value_delimiter = ',')]
    pub sandbox_connect_ports: Option<Vec<u16>>,
    /// Extra trees confined kernels may read, `:`-separated (a model cache,
    /// datasets); beside the system's, nothing of this user's home is.
    #[arg(long, env = "LAB_SANDBOX_READ_PATHS", value_delimiter = ':')]
    pub sandbox_read_paths: Option<Vec<PathBuf>>,
    /// Warning time of a kernel whose borrowed GPU is reclaimed (`120s`).
    #[arg(long, env = "LAB_RECLAIM_GRACE", value_parser = parse_limit)]
    pub reclaim_grace: Option<Limit>,
    /// Leave local kernels running at a clean stop (SIGTERM, Ctrl-C), for
    /// the next start to re-attach: a restart or an upgrade. Without it a
    /// stop ends them, as Jupyter Server does.
    #[arg(long, env = "LAB_KEEP_KERNELS")]
    pub keep_kernels: bool,
    /// How long an academy kernel lives on once it stops hearing from its
    /// gateway (`10m`; `off` for ever); at least 1s.
    #[arg(long, env = "LAB_ORPHAN_TIMEOUT", value_parser = parse_limit)]
    pub orphan_timeout: Option<Limit>,
}

/// A duration flag that may also be `off`. A newtype, because clap reads
/// `Option<Option<T>>` as a flag whose value is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Duration>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    parse_duration(s).map(Limit)
}

/// A duration in lab.toml or a flag: humantime's grammar (`90s`, `30m`,
/// `2h`, `1d`, `1h 30m`, `200ms`), or a bare number of seconds (`90`,
/// `0.5`); `off`, `none` or `0` for none.
pub fn parse_duration(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t == "off" || t == "0" || t == "none" {
        return Ok(None);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return t
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .map(Some)
            .ok_or_else(|| format!("expected a number of seconds, got {s:?}"));
    }
    humantime::parse_duration(t)
        .map(Some)
        .map_err(|e| format!("expected a duration such as 90s, 30m or 2h, got {s:?}: {e}"))
}

fn parse_pool(s: &str) -> Result<(String, usize), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected SPEC=N, got {s:?}"))?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("expected a count in {s:?}"))?;
    Ok((name.trim().to_owned(), n))
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub kernelspec_dirs: Vec<PathBuf>,
    pub iopub_msg_rate_limit: Option<f64>,
    pub iopub_data_rate_limit: Option<f64>,
    #[serde(default)]
    pub warm_pool: std::collections::BTreeMap<String, usize>,
    pub gpus: Option<String>,
    pub queue_wait: Option<f64>,
    pub cull_idle_gpu: Option<String>,
    pub cull_idle_cpu: Option<String>,
    pub cull_max_runtime: Option<String>,
    pub cull_warning: Option<String>,
    pub cull_connected: Option<bool>,
    pub reclaim_grace: Option<String>,
    pub orphan_timeout: Option<String>,
    pub sandbox: Option<launch::sandbox::SandboxMode>,
    pub sandbox_connect_ports: Option<Vec<u16>>,
    pub sandbox_read_paths: Option<Vec<PathBuf>>,
    pub backend: Option<String>,
    pub kubernetes: Option<launch::kube::KubeConfig>,
    pub starvation_limit: Option<String>,
    /// The most GPUs one kernel may ask for, per role.
    #[serde(default)]
    pub role_max_gpus: std::collections::BTreeMap<String, scheduler::Amount>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub grading: GradingFile,
    #[serde(default)]
    pub competitions: CompetitionsFile,
    #[serde(default)]
    pub login: LoginFile,
}

/// `[competitions]` in lab.toml: how many code submissions run at once
/// (across competitions; fair between them). Their quota group is
/// `competitions`, or `competitions-SLUG` where ops made one.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompetitionsFile {
    /// At most this many code runs at once (default: the CPUs).
    pub parallel: Option<usize>,
}

/// `[grading]` in lab.toml: how many submissions are graded at once, and
/// the quota group grading kernels are admitted in.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradingFile {
    /// At most this many grading kernels at once (default: the CPUs).
    pub parallel: Option<usize>,
    /// The quota group of grading kernels (default `grading`): give it a
    /// guarantee to keep capacity for grading at a deadline.
    pub group: Option<String>,
}

/// Settings after merging.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub no_auth: bool,
    pub kernelspec_dirs: Vec<PathBuf>,
    pub limits: RateLimits,
    pub caps: Limits,
    pub warm_pool: std::collections::BTreeMap<String, usize>,
    pub gpus: GpuSource,
    pub queue_wait: Duration,
    pub cull: CullPolicy,
    pub tuning: scheduler::Tuning,
    pub roles: RoleLimits,
    pub sandbox: launch::sandbox::SandboxMode,
    /// TCP ports confined kernels may connect to.
    pub sandbox_connect_ports: Vec<u16>,
    /// Extra trees confined kernels may read.
    pub sandbox_read_paths: Vec<PathBuf>,
    pub backend: Backend,
    /// Whether a clean stop leaves the local kernels running.
    pub keep_kernels: bool,
    /// See `KernelManager::with_orphan_timeout`.
    pub orphan_timeout: Option<Duration>,
    pub grading: GradingFile,
    pub competitions: CompetitionsFile,
    /// Browser sessions' lifetime and idle timeout; personal tokens' longest.
    pub login: LoginPolicy,
    /// OpenID Connect providers to sign in with, their secrets read.
    pub oidc: Vec<OidcProvider>,
}

/// Where kernels run.
#[derive(Debug, Clone)]
pub enum Backend {
    Local,
    Kubernetes(Box<launch::kube::KubeConfig>),
}

/// Where the GPU inventory comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuSource {
    Detect,
    None,
    Modelled(scheduler::Cluster),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is invalid: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "--no-auth is refused on {0}: without authentication the server is open to anyone who can reach it; bind to 127.0.0.1"
    )]
    OpenServer(IpAddr),
}

pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".local/share/academy-lab"))
        .unwrap_or_else(|| PathBuf::from(".academy-lab"))
}

impl Config {
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let data_dir_hint = args.data_dir.clone().unwrap_or_else(default_data_dir);
        let file_path = args.config.clone().or_else(|| {
            let p = data_dir_hint.join("lab.toml");
            p.exists().then_some(p)
        });
        let file = match &file_path {
            None => FileConfig::default(),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.clone(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(p.clone(), e))?
            }
        };
        let host = args
            .host
            .or(file.host)
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        if args.no_auth && !host.is_loopback() {
            return Err(ConfigError::OpenServer(host));
        }
        let gpus = match args
            .gpus
            .clone()
            .or(file.gpus.clone())
            .as_deref()
            .map(str::trim)
        {
            None | Some("auto") | Some("") => GpuSource::Detect,
            Some("none") | Some("0") => GpuSource::None,
            Some(spec) => GpuSource::Modelled(
                scheduler::Cluster::parse(spec).map_err(|e| ConfigError::Invalid(e.to_string()))?,
            ),
        };
        let file_duration =
            |v: &Option<String>, what: &str| -> Result<Option<Option<Duration>>, ConfigError> {
                v.as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| ConfigError::Invalid(format!("{what}: {e}")))
            };
        let d = CullPolicy::default();
        let cull = CullPolicy {
            idle_gpu: args
                .cull_idle_gpu
                .map(|l| l.0)
                .or(file_duration(&file.cull_idle_gpu, "cull_idle_gpu")?)
                .unwrap_or(d.idle_gpu),
            idle_cpu: args
                .cull_idle_cpu
                .map(|l| l.0)
                .or(file_duration(&file.cull_idle_cpu, "cull_idle_cpu")?)
                .unwrap_or(d.idle_cpu),
            max_runtime: args
                .cull_max_runtime
                .map(|l| l.0)
                .or(file_duration(&file.cull_max_runtime, "cull_max_runtime")?)
                .unwrap_or(d.max_runtime),
            warning: args
                .cull_warning
                .map(|l| l.0)
                .or(file_duration(&file.cull_warning, "cull_warning")?)
                .map(|w| w.unwrap_or_default())
                .unwrap_or(d.warning),
            connected: file.cull_connected.unwrap_or(d.connected),
        };
        let caps = file.limits.resolve()?;
        let t = scheduler::Tuning::default();
        let tuning = scheduler::Tuning {
            default_max_kernels: Some(caps.kernels_per_user),
            reclaim_grace_ms: args
                .reclaim_grace
                .map(|l| l.0)
                .or(file_duration(&file.reclaim_grace, "reclaim_grace")?)
                .map_or(t.reclaim_grace_ms, |g| {
                    g.unwrap_or_default().as_millis() as u64
                }),
            starvation_ms: file_duration(&file.starvation_limit, "starvation_limit")?
                .map_or(t.starvation_ms, |g| {
                    g.map_or(u64::MAX, |d| d.as_millis() as u64)
                }),
            ..t
        };
        let mut roles = RoleLimits::default();
        for (role, max) in &file.role_max_gpus {
            match role.as_str() {
                "engineer" => roles.engineer = *max,
                "trainer" => roles.trainer = *max,
                "ops" => roles.ops = *max,
                "admin" => roles.admin = *max,
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "role_max_gpus: unknown role {other:?} (engineer, trainer, ops, admin)"
                    )));
                }
            }
        }
        let backend = match args
            .backend
            .as_deref()
            .or(file.backend.as_deref())
            .unwrap_or("local")
        {
            "local" => Backend::Local,
            "kubernetes" | "k8s" => {
                Backend::Kubernetes(Box::new(file.kubernetes.clone().unwrap_or_default()))
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "unknown backend {other:?} (local, kubernetes)"
                )));
            }
        };
        let queue_wait = args.queue_wait.or(file.queue_wait).unwrap_or(2.0);
        if !(queue_wait.is_finite() && (0.0..=3600.0).contains(&queue_wait)) {
            return Err(ConfigError::Invalid(format!(
                "queue_wait must be between 0 and 3600 seconds, not {queue_wait}"
            )));
        }
        let orphan_timeout = args
            .orphan_timeout
            .map(|l| l.0)
            .or(file_duration(&file.orphan_timeout, "orphan_timeout")?)
            .unwrap_or(Some(DEFAULT_ORPHAN_TIMEOUT));
        if let Some(t) = orphan_timeout.filter(|t| *t < Duration::from_secs(1)) {
            return Err(ConfigError::Invalid(format!(
                "orphan_timeout must be at least 1s (the gateway pings kernels at a quarter of it), not {t:?}"
            )));
        }
        let mut kernelspec_dirs = args.kernelspec_dirs.clone();
        kernelspec_dirs.extend(file.kernelspec_dirs);
        Ok(Config {
            caps,
            host,
            port: args.port.or(file.port).unwrap_or(8888),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(data_dir_hint),
            no_auth: args.no_auth,
            kernelspec_dirs,
            gpus,
            queue_wait: Duration::from_secs_f64(queue_wait),
            cull,
            tuning,
            roles,
            sandbox: args.sandbox.or(file.sandbox).unwrap_or_default(),
            sandbox_connect_ports: args
                .sandbox_connect_ports
                .clone()
                .or(file.sandbox_connect_ports)
                .unwrap_or_else(|| launch::sandbox::DEFAULT_CONNECT_PORTS.to_vec()),
            sandbox_read_paths: args
                .sandbox_read_paths
                .clone()
                .or(file.sandbox_read_paths)
                .unwrap_or_default(),
            backend,
            keep_kernels: args.keep_kernels,
            orphan_timeout,
            grading: file.grading.clone(),
            competitions: file.competitions.clone(),
            login: file.login.policy()?,
            oidc: oidc::providers(&file.login.oidc)?,
            warm_pool: {
                let mut pool = file.warm_pool;
                pool.extend(args.warm_pool.iter().cloned());
                pool
            },
            limits: {
                let d = RateLimits::default();
                RateLimits {
                    messages_per_second: args
                        .iopub_msg_rate_limit
                        .or(file.iopub_msg_rate_limit)
                        .unwrap_or(d.messages_per_second),
                    bytes_per_second: args
                        .iopub_data_rate_limit
                        .or(file.iopub_data_rate_limit)
                        .unwrap_or(d.bytes_per_second),
                    window: d.window,
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn no_auth_is_refused_off_loopback_and_flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lab.toml");
        std::fs::write(
            &file,
            "port = 9000\nhost = \"127.0.0.1\"\nwarm_pool = { academy-candle = 1 }\n",
        )
        .unwrap();
        let args =
            Cli::parse_from(["lab", "--config", file.to_str().unwrap(), "--port", "9100"]).serve;
        let config = Config::load(&args).unwrap();
        assert_eq!(config.port, 9100);
        assert_eq!(config.warm_pool["academy-candle"], 1);
        let args = Cli::parse_from(["lab", "--host", "0.0.0.0", "--no-auth"]).serve;
        let err = Config::load(&args).unwrap_err();
        assert!(err.to_string().contains("open to anyone"), "{err}");
        let args = Cli::parse_from(["lab", "--host", "127.0.0.1", "--no-auth"]).serve;
        assert!(Config::load(&args).unwrap().no_auth);
        std::fs::write(&file, "prot = 1\n").unwrap();
        let args = Cli::parse_from(["lab", "--config", file.to_str().unwrap()]).serve;
        assert!(
            Config::load(&args)
                .unwrap_err()
                .to_string()
                .contains("invalid")
        );
    }
    #[test]
    fn culling_flags_parse_durations_and_off() {
        let args = Cli::try_parse_from([
            "lab",
            "--cull-idle-cpu",
            "off",
            "--cull-idle-gpu",
            "30m",
            "--cull-max-runtime",
            "8h",
            "--cull-warning",
            "90s",
            "--reclaim-grace",
            "2m",
        ])
        .unwrap()
        .serve;
        let config = Config::load(&args).unwrap();
        assert_eq!(config.cull.idle_cpu, None);
        assert_eq!(config.cull.idle_gpu, Some(Duration::from_secs(1800)));
        assert_eq!(config.cull.max_runtime, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(config.cull.warning, Duration::from_secs(90));
        assert_eq!(config.tuning.reclaim_grace_ms, 120_000);
        let bad = Cli::try_parse_from(["lab", "--cull-idle-cpu", "soon"]);
        assert!(bad.is_err());
    }

    #[test]
    fn durations_read_humantime_bare_seconds_and_off() {
        let secs = |s| parse_duration(s).map(|d| d.map(|d| d.as_secs_f64()));
        assert_eq!(secs("90"), Ok(Some(90.0)));
        assert_eq!(secs("0.5"), Ok(Some(0.5)));
        assert_eq!(secs("90s"), Ok(Some(90.0)));
        assert_eq!(secs("30m"), Ok(Some(1800.0)));
        assert_eq!(secs(" 2h "), Ok(Some(7200.0)));
        assert_eq!(secs("1d"), Ok(Some(86400.0)));
        assert_eq!(secs("1h 30m"), Ok(Some(5400.0)));
        assert_eq!(secs("200ms"), Ok(Some(0.2)));
        for none in ["off", "none", "0"] {
            assert_eq!(secs(none), Ok(None), "{none}");
        }
        for bad in ["", "soon", "-5s", "5 parsecs", "1.2.3"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn size_limits_read_bytes_or_units_and_refuse_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lab.toml");
        let load = |toml: &str| {
            std::fs::write(&file, toml).unwrap();
            let args = Cli::parse_from(["lab", "--config", file.to_str().unwrap()]).serve;
            Config::load(&args)
        };
        let c = load("[limits]\niopub_message = \"2 MiB\"\nrequest_body = 5000000\n").unwrap();
        assert_eq!(c.caps.messages.iopub, 2 * 1024 * 1024);
        assert_eq!(c.caps.request_body, 5_000_000);
        assert_eq!(c.caps.messages.shell, Limits::default().messages.shell);
        let err = load("[limits]\nshell_message = 10\n").unwrap_err();
        assert!(err.to_string().contains("limits.shell_message"), "{err}");
        assert!(load("[limits]\nsize_of_everything = 1\n").is_err());
    }
}
