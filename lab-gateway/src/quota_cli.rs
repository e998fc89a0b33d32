//! `lab group …` and `lab quota …`: ops commands that edit the quotas in
//! the database directly. A running server notices the change within a
//! second (it polls the stored version) and re-runs admission.

use std::path::Path;

use scheduler::quota::{
    Amount, GroupQuota, Period, QuotaConfig, QuotaError, UserLimits, UserQuota, validate_name,
};

use crate::scheduling::QUOTAS_KEY;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum QuotaCliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Flags shared by `group add` and `group set`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GroupFlags {
    /// Fair-share weight.
    #[arg(long)]
    pub weight: Option<f64>,
    /// Guaranteed GPUs, `MODEL=N` (repeatable).
    #[arg(long = "guaranteed", value_parser = parse_model_count)]
    pub guaranteed: Vec<(String, u32)>,
    /// GPUs it may borrow beyond its guarantee, `MODEL=N|unlimited`; `*` for any model.
    #[arg(long = "borrow", value_parser = parse_model_amount)]
    pub borrow: Vec<(String, Amount)>,
    #[command(flatten)]
    pub user: UserFlags,
}

/// Per-user caps.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UserFlags {
    /// Concurrent kernels per user (a number or `unlimited`).
    #[arg(long, value_parser = parse_amount)]
    pub max_kernels: Option<Amount>,
    /// Concurrent GPUs per user.
    #[arg(long, value_parser = parse_amount)]
    pub max_gpus: Option<Amount>,
    /// GPU-hours per period.
    #[arg(long)]
    pub gpu_hours: Option<f64>,
    /// The budget period: day, week or month.
    #[arg(long, value_parser = parse_period)]
    pub period: Option<Period>,
}

impl UserFlags {
    fn apply(&self, limits: &mut UserLimits) {
        if self.max_kernels.is_some() {
            limits.max_kernels = self.max_kernels;
        }
        if self.max_gpus.is_some() {
            limits.max_gpus = self.max_gpus;
        }
        if self.gpu_hours.is_some() {
            limits.gpu_hours = self.gpu_hours;
        }
        if self.period.is_some() {
            limits.period = self.period;
        }
    }
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    match s.trim() {
        "unlimited" => Ok(Amount::Unlimited),
        n => n
            .parse()
            .map(Amount::Finite)
            .map_err(|_| format!("expected a count or `unlimited`, got {s:?}")),
    }
}

fn parse_model_count(s: &str) -> Result<(String, u32), String> {
    let (m, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected MODEL=N, got {s:?}"))?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("expected a GPU count in {s:?}"))?;
    Ok((m.trim().to_owned(), n))
}

fn parse_model_amount(s: &str) -> Result<(String, Amount), String> {
    let (m, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected MODEL=N, got {s:?}"))?;
    Ok((m.trim().to_owned(), parse_amount(n)?))
}

fn parse_period(s: &str) -> Result<Period, String> {
    match s {
        "day" => Ok(Period::Day),
        "week" => Ok(Period::Week),
        "month" => Ok(Period::Month),
        _ => Err(format!("expected day, week or month, got {s:?}")),
    }
}

pub fn load(store: &Store) -> Result<QuotaConfig, QuotaCliError> {
    match store.setting(QUOTAS_KEY)? {
        None => Ok(QuotaConfig::default()),
        Some((json, _)) => serde_json::from_str(&json)
            .map_err(|e| QuotaCliError::Usage(format!("the stored quotas are unreadable: {e}"))),
    }
}

pub fn save(store: &Store, quotas: &QuotaConfig) -> Result<(), QuotaCliError> {
    quotas.validate()?;
    let json = serde_json::to_string(quotas)
        .map_err(|e| QuotaCliError::Usage(format!("cannot encode quotas: {e}")))?;
    store.set_setting(QUOTAS_KEY, &json)?;
    Ok(())
}

/// `lab group add` (`create`) or `lab group set` (not `create`).
pub fn put_group(
    store: &Store,
    name: &str,
    flags: &GroupFlags,
    create: bool,
) -> Result<GroupQuota, QuotaCliError> {
    validate_name(name)?;
    let mut quotas = load(store)?;
    let mut group = match (quotas.group(name).cloned(), create) {
        (Some(_), true) => {
            return Err(QuotaCliError::Usage(format!(
                "group {name:?} exists; change it with `lab group set`"
            )));
        }
        (None, false) => {
            return Err(QuotaCliError::Usage(format!(
                "no group {name:?}; create it with `lab group add`"
            )));
        }
        (Some(g), false) => g,
        (None, true) => GroupQuota::new(name),
    };
    if let Some(w) = flags.weight {
        group.weight = w;
    }
    for (m, n) in &flags.guaranteed {
        group.guaranteed.insert(m.clone(), *n);
    }
    for (m, n) in &flags.borrow {
        group.borrow_limit.insert(m.clone(), *n);
    }
    flags.user.apply(&mut group.user_limits);
    group.validate()?;
    quotas.put_group(group.clone());
    save(store, &quotas)?;
    Ok(group)
}

pub fn remove_group(store: &Store, name: &str) -> Result<(), QuotaCliError> {
    let mut quotas = load(store)?;
    let before = quotas.groups.len();
    quotas.groups.retain(|g| g.name != name);
    if quotas.groups.len() == before {
        return Err(QuotaCliError::Usage(format!("no group {name:?}")));
    }
    save(store, &quotas)
}

/// Sets a user's own caps (over their group's).
pub fn set_user(store: &Store, name: &str, flags: &UserFlags) -> Result<UserQuota, QuotaCliError> {
    if store.user(name)?.is_none() {
        return Err(QuotaCliError::Usage(format!("no user {name:?}")));
    }
    let mut quotas = load(store)?;
    let mut user = quotas.user(name).cloned().unwrap_or(UserQuota {
        name: name.to_owned(),
        limits: UserLimits::default(),
    });
    flags.apply(&mut user.limits);
    quotas.put_user(user.clone());
    save(store, &quotas)?;
    Ok(user)
}

/// Replaces every quota with a TOML or YAML file (by extension).
pub fn import(store: &Store, path: &Path) -> Result<QuotaConfig, QuotaCliError> {
    let text = std::fs::read_to_string(path).map_err(|source| QuotaCliError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let quotas = if is_yaml {
        QuotaConfig::from_yaml(&text)?
    } else {
        QuotaConfig::from_toml(&text)?
    };
    save(store, &quotas)?;
    Ok(quotas)
}

pub fn export(store: &Store, format: &str) -> Result<String, QuotaCliError> {
    let quotas = load(store)?;
    match format {
        "toml" => Ok(quotas.to_toml()),
        "yaml" | "yml" => Ok(quotas.to_yaml()),
        "json" => {
            serde_json::to_string_pretty(&quotas).map_err(|e| QuotaCliError::Usage(e.to_string()))
        }
        other => Err(QuotaCliError::Usage(format!(
            "unknown format {other:?} (toml, yaml, json)"
        ))),
    }
}
