//! The `lab` command line: its subcommands, and what each does.
//!
//! Why here and not in `main.rs`: the binary stays wiring (flags → `serve`),
//! and each admin command lives in a file of its own job. This is the
//! binary's edge, so it reports with `anyhow`; nothing else in the library
//! calls it. `lab serve` itself is run by the binary (`serve` is passed in).

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;

mod accounts;
mod assignments;
mod competitions;
mod execute;
mod quotas;
mod simulate;

pub use accounts::{LOGIN_CODE_TTL, private_dir};

#[derive(Parser)]
#[command(
    name = "lab",
    version,
    about = "Academy Lab: GPU notebooks for the academy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the server (local backend, SQLite in the data dir).
    Serve(ServeArgs),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: accounts::UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: accounts::TokenCommand,
    },
    /// Manage groups (cohorts, teams) and their GPU quotas.
    Group {
        #[command(subcommand)]
        command: quotas::GroupCommand,
        #[arg(long, env = "LAB_DATA_DIR", global = true)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Run a notebook through a gateway (like papermill), writing its outputs.
    Execute(execute::ExecuteArgs),
    /// Replay an academy term through admission, to size quotas and the cluster.
    Simulate(simulate::SimulateArgs),
    /// Kubernetes helpers.
    K8s {
        #[command(subcommand)]
        command: quotas::K8sCommand,
    },
    /// Graded exercises through a gateway: import, release, publish,
    /// grade, submit, export the gradebook.
    Assignment {
        #[command(subcommand)]
        command: assignments::AssignmentCommand,
        #[command(flatten)]
        remote: assignments::Remote,
    },
    /// Submit a CSV to a competition on a gateway.
    Submit(competitions::SubmitArgs),
    /// Competitions: score a submission against a solution offline.
    Competition {
        #[command(subcommand)]
        command: competitions::CompetitionCommand,
    },
    /// Show, import and export every quota; set a user's own caps.
    Quota {
        #[command(subcommand)]
        command: quotas::QuotaCommand,
        #[arg(long, env = "LAB_DATA_DIR", global = true)]
        data_dir: Option<std::path::PathBuf>,
    },
}

/// Runs the command `cli` names; `lab serve` through `serve`.
pub fn run(cli: Cli, serve: fn(ServeArgs) -> anyhow::Result<()>) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::User { command } => accounts::user(command),
        Command::Token { command } => accounts::token(command),
        Command::Group { command, data_dir } => quotas::group(command, data_dir),
        Command::Execute(args) => execute::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::K8s { command } => quotas::k8s(command),
        Command::Quota { command, data_dir } => quotas::quota(command, data_dir),
        Command::Assignment { command, remote } => assignments::run(remote, command),
        Command::Competition { command } => competitions::run(command),
        Command::Submit(args) => competitions::submit(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn an_unknown_role_is_refused_with_the_roles_named() {
        let err = Cli::try_parse_from(["lab", "user", "add", "bob", "--role", "superuser"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("superuser") && err.contains("engineer"),
            "{err}"
        );
    }
}
