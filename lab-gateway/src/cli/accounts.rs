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
    /// Enrol people from a CSV (columns `name`, and any of `email`, `role`,
    /// `group`): new ones are added, changed ones updated, all or nothing.
    /// Run twice, the second run changes nothing. Prints what changed.
    Import {
        file: PathBuf,
        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, env = "LAB_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Deactivate a user: their kernels stop (within a second, on a running
    /// server), their queued starts are cancelled, their tokens and sessions
    /// end; their files, submissions and scores stay.
    Deactivate {
        name: String,
        #[arg(long, env = "LAB_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Let a deactivated user sign in again (with a new token or login URL).
    Reactivate {
        name: String,
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
        UserCommand::Import {
            file,
            dry_run,
            data_dir,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let people = crate::roster::read_csv(&bytes)
                .with_context(|| format!("{} is refused, nothing changed", file.display()))?;
            let report = open_store(data_dir)?.enrol(&people, dry_run)?;
            print!("{}", describe(&report));
            Ok(())
        }
        UserCommand::Deactivate { name, data_dir } => {
            if open_store(data_dir)?.deactivate_user(&name)? {
                println!(
                    "{name} is deactivated: tokens and sessions ended; a running server stops their kernels within a second"
                );
            } else {
                println!("{name} was deactivated already");
            }
            Ok(())
        }
        UserCommand::Reactivate { name, data_dir } => {
            if open_store(data_dir)?.reactivate_user(&name)? {
                println!(
                    "{name} is active again; give them a new token (lab token create {name}) or a login URL"
                );
            } else {
                println!("{name} was active already");
            }
            Ok(())
        }
    }
}

/// What an enrolment did (or would do), a line per change and a summary.
fn describe(report: &crate::store::Enrolment) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verb = if report.dry_run { "would " } else { "" };
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for a in &report.added {
        let _ = writeln!(
            out,
            "+ {} ({}, group {}, {})",
            a.name,
            a.role.as_str(),
            shown(&a.group),
            shown(&a.email)
        );
    }
    for (name, changes) in &report.changed {
        let what: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {} -> {}", c.field, shown(&c.before), shown(&c.after)))
            .collect();
        let _ = writeln!(out, "~ {name}: {}", what.join(", "));
    }
    for name in &report.deactivated {
        let _ = writeln!(
            out,
            "! {name} is deactivated and stays so (lab user reactivate {name})"
        );
    }
    let _ = writeln!(
        out,
        "{verb}add {}, {verb}change {}, unchanged {}{}",
        report.added.len(),
        report.changed.len(),
        report.unchanged,
        if report.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    out
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
