//! Configuration: flags, then `LAB_*` environment variables, then a TOML file.
//!
//! clap reads flags and the environment; the file (`--config`, or
//! `<data-dir>/lab.toml` when present) fills what neither set.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

/// Settings after merging.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub no_auth: bool,
    pub kernelspec_dirs: Vec<PathBuf>,
    pub limits: crate::ws::RateLimits,
    pub warm_pool: std::collections::BTreeMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is invalid: {1}")]
    Parse(PathBuf, toml::de::Error),
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
        let mut kernelspec_dirs = args.kernelspec_dirs.clone();
        kernelspec_dirs.extend(file.kernelspec_dirs);
        Ok(Config {
            host,
            port: args.port.or(file.port).unwrap_or(8888),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(data_dir_hint),
            no_auth: args.no_auth,
            kernelspec_dirs,
            warm_pool: {
                let mut pool = file.warm_pool;
                pool.extend(args.warm_pool.iter().cloned());
                pool
            },
            limits: {
                let d = crate::ws::RateLimits::default();
                crate::ws::RateLimits {
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
}
