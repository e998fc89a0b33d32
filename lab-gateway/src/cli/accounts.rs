//! `lab user` and `lab token`: users, API tokens and login URLs, straight
//! in the data dir's database (the server need not run).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::default_data_dir;
use crate::store::{Role, Store};

#[derive(Subcommand)]
pub enum UserCommand {
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
pub enum TokenCommand {
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
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(600);

/// Creates `dir` (and its parents) if needed and makes it the gateway's
/// alone (0700), also when an older version left it open to others.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

/// The database of the data dir (default: the user's).
pub(super) fn open_store(data_dir: Option<PathBuf>) -> anyhow::Result<Store> {
    let dir = data_dir.unwrap_or_else(default_data_dir);
    private_dir(&dir)?;
    Ok(Store::open(&dir.join("lab.db"))?)
}

pub(super) fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            group,
            data_dir,
        } => {
            let store = open_store(data_dir)?;
            store.add_user(&name, role, group.as_deref())?;
            let (_, token) = store.create_token(&name, "initial")?;
            println!("{token}");
            Ok(())
        }
    }
}

pub(super) fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            user,
            label,
            data_dir,
        } => {
            let (_, token) = open_store(data_dir)?.create_token(&user, &label)?;
            println!("{token}");
            Ok(())
        }
        TokenCommand::LoginUrl { user, data_dir } => {
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
        TokenCommand::Revoke { token, data_dir } => {
            if open_store(data_dir)?.revoke_token(&token)? {
                println!("revoked");
                Ok(())
            } else {
                anyhow::bail!("no live token matches {token:?}")
            }
        }
    }
}
