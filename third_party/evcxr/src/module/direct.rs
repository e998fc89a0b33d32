// Academy Lab patch (issue 18): not in evcxr 0.22.0.

//! Compiling a cell with rustc alone when cargo would only run rustc again.
//!
//! Between two cells with the same manifest, cargo's whole work is to build
//! the `ctx` crate again, yet each cell paid for cargo's start, its reading
//! of the manifest and lock file and its freshness check of every
//! dependency (tens of milliseconds, more with many dependencies). So the
//! rustc wrapper records how cargo ran rustc for `ctx` (program, arguments,
//! environment, folder), and the next cell, while nothing cargo reads has
//! changed, runs that same command itself. "Nothing changed" is: the same
//! cargo command (its arguments and variables carry the linker, the cache
//! and the other options), the same environment (`:env` changes the
//! kernel's), the same `Cargo.toml` and `.cargo/config.toml`, and no path
//! dependency in the manifest (a local crate's sources can change between
//! cells without the manifest changing; cargo must look). A build that
//! fails for a reason that is not in the cell's code (a dependency's output
//! gone from `target/`) is handed back to cargo.
//!
//! The record holds the kernel's environment: it is written readable by
//! its owner only, removed once read, and never printed.

use super::CRATE_NAME;
use crate::code_block::CodeKind;
use crate::errors::Error;
use serde::Deserialize;
use serde::Serialize;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

/// Set on cargo's command: where the wrapper writes the `ctx` invocation.
pub(crate) const RECORD_ENV: &str = "EVCXR_RECORD_RUSTC";

/// Variables that are cargo's own process plumbing, meaningless once it has
/// exited (a jobserver's descriptors or fifo).
const DROPPED_ENV: &[&str] = &["CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS"];

/// How cargo ran rustc for `ctx`, as rustc got it. Not `Debug`: the
/// environment may hold secrets.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Invocation {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
}

/// An invocation and the state of the crate it is valid for.
#[derive(Clone)]
pub(crate) struct Recorded {
    fingerprint: String,
    invocation: Invocation,
}

/// In the rustc wrapper, once `command` (rustc, as the wrapper runs it)
/// has built `ctx`: writes it where cargo's caller asked, if it asked. Best
/// effort: without a record the next cell asks cargo again.
pub(crate) fn record(command: &Command) {
    if let Err(error) = try_record(command) {
        eprintln!("evcxr: could not record the cell's rustc command: {error}");
    }
}

fn try_record(command: &Command) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os(RECORD_ENV) else {
        return Ok(());
    };
    if !is_ctx(command.get_args()) {
        return Ok(());
    }
    let invocation = Invocation {
        program: command.get_program().to_owned(),
        args: command.get_args().map(ToOwned::to_owned).collect(),
        env: std::env::vars_os()
            .filter(|(k, _)| !DROPPED_ENV.iter().any(|d| k == d) && k != RECORD_ENV)
            .collect(),
        cwd: std::env::current_dir()?,
    };
    let path = PathBuf::from(path);
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(&serde_json::to_vec(&invocation)?)?;
    drop(file);
    std::fs::rename(&partial, &path)?;
    Ok(())
}

pub(crate) fn is_ctx<'a>(mut args: impl Iterator<Item = &'a std::ffi::OsStr>) -> bool {
    while let Some(arg) = args.next() {
        if arg == "--crate-name" {
            return args.next().is_some_and(|name| name == CRATE_NAME);
        }
    }
    false
}

/// What `command` (cargo's) depends on besides the cell's source; `None`
/// when the manifest has a path dependency, which only cargo can check.
pub(crate) fn fingerprint(command: &Command, crate_dir: &Path) -> Option<String> {
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).ok()?;
    let config = std::fs::read_to_string(crate_dir.join(".cargo").join("config.toml")).ok()?;
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap_or("");
    if dependencies.contains("path") {
        return None;
    }
    // The kernel's own environment, which cargo passes on (`:env` sets it),
    // hashed: the fingerprint stays in memory, but needs no secrets.
    let mut env: Vec<_> = std::env::vars_os().collect();
    env.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&env, &mut hasher);
    let env = std::hash::Hasher::finish(&hasher);
    Some(format!("{command:?}\n{env:x}\n{manifest}\n{config}"))
}

/// Reads what the wrapper recorded during the cargo build that just
/// succeeded, for a crate in the state `fingerprint`.
pub(crate) fn take_record(path: &Path, fingerprint: String) -> Option<Recorded> {
    let bytes = std::fs::read(path).ok()?;
    let _ = std::fs::remove_file(path);
    let invocation = serde_json::from_slice(&bytes).ok()?;
    Some(Recorded {
        fingerprint,
        invocation,
    })
}

impl Recorded {
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Runs rustc as cargo did. `Ok(None)`: rustc could not be started, or
    /// said something that is not a diagnostic; the caller asks cargo.
    pub(crate) fn run(
        &self,
        code_block: &crate::code_block::CodeBlock,
    ) -> Result<Option<PathBuf>, Error> {
        let inv = &self.invocation;
        let Ok(output) = Command::new(&inv.program)
            .args(&inv.args)
            .env_clear()
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&inv.cwd)
            .output()
        else {
            return Ok(None);
        };
        if output.status.success() {
            return Ok(super::execution_so_source_args(
                inv.args.iter().map(|a| a.as_os_str()),
            ));
        }
        let (errors, _) = super::errors_from_cargo_output(&output, code_block);
        // Errors in the cell's code (or in code with a fallback, which
        // evcxr handles) are the cell's; any other failure is cargo's to
        // look at.
        let in_cell = errors.iter().any(|e| {
            e.code_origins.iter().any(|origin| {
                origin.is_user_supplied() || matches!(origin, CodeKind::WithFallback(_))
            })
        });
        if !in_cell {
            return Ok(None);
        }
        Err(Error::CompilationErrors(errors))
    }
}
