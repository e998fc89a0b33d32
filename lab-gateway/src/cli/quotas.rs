//! `lab group`, `lab quota` and `lab k8s render-quotas`: the quota config
//! in the data dir's database, and Kueue objects that match it.

use std::path::PathBuf;

use clap::Subcommand;

use super::accounts::open_store;
use crate::config::{Backend, Config, GpuSource, ServeArgs};
use crate::quota_cli as q;

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group, e.g. `lab group add cohort-a --guaranteed H100-80GB=16 --borrow '*=8' --max-gpus 1`.
    Add {
        name: String,
        #[command(flatten)]
        flags: q::GroupFlags,
    },
    /// Change a group's quota (only the flags given).
    Set {
        name: String,
        #[command(flatten)]
        flags: q::GroupFlags,
    },
    /// List the groups and their members.
    List,
    /// Delete a group (its members fall back to the default group).
    Remove { name: String },
    /// Put a user in a group (or, without GROUP, in none).
    Member { user: String, group: Option<String> },
}

#[derive(Subcommand)]
pub enum K8sCommand {
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
pub enum QuotaCommand {
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
        flags: q::UserFlags,
    },
}

pub(super) fn group(command: GroupCommand, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
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

pub(super) fn quota(command: QuotaCommand, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
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

pub(super) fn k8s(command: K8sCommand) -> anyhow::Result<()> {
    let K8sCommand::RenderQuotas { cpu, memory, serve } = command;
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
    let quotas = q::load(&store)?;
    let objects = launch::kube::kueue::render(
        &kube,
        &cluster,
        &quotas,
        &launch::kube::kueue::CpuMemory { cpu, memory },
    );
    print!("{}", launch::kube::kueue::to_yaml(&objects)?);
    Ok(())
}
