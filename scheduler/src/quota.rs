//! The quotas ops staff set: per group (cohort or team) a guaranteed GPU
//! share per model, a limit on borrowing idle GPUs beyond it, a weight for
//! fair share, and per-user caps; per user, overrides of those caps.
//!
//! The same [`QuotaConfig`] is what the REST API edits, what `lab quota
//! export` prints and what `lab quota import` reads (TOML or YAML), so ops
//! can keep quotas in git.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The group of users that belong to none.
pub const DEFAULT_GROUP: &str = "default";

/// A count with "no limit" as a value: `8` or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Amount {
    Finite(u32),
    Unlimited,
}

impl Amount {
    pub fn allows(self, n: u64) -> bool {
        match self {
            Amount::Finite(max) => n <= u64::from(max),
            Amount::Unlimited => true,
        }
    }

    pub fn as_u64(self) -> u64 {
        match self {
            Amount::Finite(n) => u64::from(n),
            Amount::Unlimited => u64::MAX,
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Finite(n) => write!(f, "{n}"),
            Amount::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Finite(n) => s.serialize_u32(*n),
            Amount::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => u32::try_from(n)
                .map(Amount::Finite)
                .map_err(|_| serde::de::Error::custom(format!("{n} is too large"))),
            Raw::S(s) if s == "unlimited" => Ok(Amount::Unlimited),
            Raw::S(s) => s.parse().map(Amount::Finite).map_err(|_| {
                serde::de::Error::custom(format!("{s:?} is neither a count nor \"unlimited\""))
            }),
        }
    }
}

/// How often a GPU-hour budget resets (at 00:00 UTC; weeks start on Monday).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    #[default]
    Week,
    Month,
}

impl Period {
    /// The start of the period holding `now`, and the start of the next one.
    pub fn bounds(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = Utc.from_utc_datetime(&now.date_naive().and_time(NaiveTime::MIN));
        match self {
            Period::Day => (midnight, midnight + Duration::days(1)),
            Period::Week => {
                let start =
                    midnight - Duration::days(i64::from(now.weekday().num_days_from_monday()));
                (start, start + Duration::days(7))
            }
            Period::Month => {
                let start = midnight - Duration::days(i64::from(now.day0()));
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                let next = Utc
                    .with_ymd_and_hms(y, m, 1, 0, 0, 0)
                    .single()
                    .unwrap_or(start + Duration::days(31));
                (start, next)
            }
        }
    }
}

/// Caps on one user. Unset fields inherit (a user's from their group's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    /// Concurrent kernels, queued ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kernels: Option<Amount>,
    /// Concurrent GPUs, queued requests included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpus: Option<Amount>,
    /// GPU-hours per `period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

impl UserLimits {
    /// `self`, with unset fields taken from `base`.
    pub fn over(&self, base: &UserLimits) -> UserLimits {
        UserLimits {
            max_kernels: self.max_kernels.or(base.max_kernels),
            max_gpus: self.max_gpus.or(base.max_gpus),
            gpu_hours: self.gpu_hours.or(base.gpu_hours),
            period: self.period.or(base.period),
        }
    }
}

/// A cohort or team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupQuota {
    pub name: String,
    /// Fair-share weight: a group of weight 2 gets twice the share of weight 1.
    #[serde(default = "one")]
    pub weight: f64,
    /// GPUs per model the group is guaranteed; borrowed GPUs are reclaimed
    /// for it when it needs them.
    #[serde(default)]
    pub guaranteed: BTreeMap<String, u32>,
    /// GPUs per model it may borrow beyond its guarantee while they are
    /// idle; `"*"` stands for models not listed.
    #[serde(default)]
    pub borrow_limit: BTreeMap<String, Amount>,
    /// Caps on each member.
    #[serde(default)]
    pub user_limits: UserLimits,
}

fn one() -> f64 {
    1.0
}

impl GroupQuota {
    pub fn new(name: impl Into<String>) -> Self {
        GroupQuota {
            name: name.into(),
            weight: 1.0,
            guaranteed: BTreeMap::new(),
            borrow_limit: BTreeMap::new(),
            user_limits: UserLimits::default(),
        }
    }

    /// Users in no group: nothing guaranteed, may borrow any idle GPU.
    pub fn default_group() -> Self {
        let mut g = GroupQuota::new(DEFAULT_GROUP);
        g.borrow_limit.insert("*".into(), Amount::Unlimited);
        g
    }

    pub fn guaranteed(&self, model: &str) -> u32 {
        self.guaranteed.get(model).copied().unwrap_or(0)
    }

    pub fn borrow(&self, model: &str) -> Amount {
        self.borrow_limit
            .get(model)
            .or_else(|| self.borrow_limit.get("*"))
            .copied()
            .unwrap_or(Amount::Finite(0))
    }

    /// The most GPUs of `model` the group may hold at once.
    pub fn ceiling(&self, model: &str) -> Amount {
        match self.borrow(model) {
            Amount::Unlimited => Amount::Unlimited,
            Amount::Finite(b) => Amount::Finite(self.guaranteed(model).saturating_add(b)),
        }
    }
}

/// A user's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuota {
    pub name: String,
    #[serde(flatten)]
    pub limits: UserLimits,
}

/// Every quota, as ops edit, import and export it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupQuota>,
    #[serde(default, rename = "user")]
    pub users: Vec<UserQuota>,
}

/// A quota file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("cannot read the quotas as TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("cannot read the quotas as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("invalid quotas: {0}")]
    Invalid(String),
}

impl QuotaConfig {
    pub fn from_toml(text: &str) -> Result<Self, QuotaError> {
        let c: QuotaConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    pub fn from_yaml(text: &str) -> Result<Self, QuotaError> {
        let c: QuotaConfig = serde_yaml_ng::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), QuotaError> {
        let mut seen = std::collections::HashSet::new();
        for g in &self.groups {
            validate_name(&g.name)?;
            g.validate()?;
            if !seen.insert(g.name.as_str()) {
                return Err(QuotaError::Invalid(format!(
                    "group {:?} appears twice",
                    g.name
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for u in &self.users {
            validate_name(&u.name)?;
            u.limits.validate()?;
            if !seen.insert(u.name.as_str()) {
                return Err(QuotaError::Invalid(format!(
                    "user {:?} appears twice",
                    u.name
                )));
            }
        }
        Ok(())
    }

    pub fn group(&self, name: &str) -> Option<&GroupQuota> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&UserQuota> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Inserts or replaces a group.
    pub fn put_group(&mut self, group: GroupQuota) {
        match self.groups.iter_mut().find(|g| g.name == group.name) {
            Some(g) => *g = group,
            None => self.groups.push(group),
        }
    }

    pub fn put_user(&mut self, user: UserQuota) {
        match self.users.iter_mut().find(|u| u.name == user.name) {
            Some(u) => *u = user,
            None => self.users.push(user),
        }
    }
}

impl GroupQuota {
    pub fn validate(&self) -> Result<(), QuotaError> {
        validate_name(&self.name)?;
        if !(self.weight.is_finite() && self.weight > 0.0 && self.weight <= 1e6) {
            return Err(QuotaError::Invalid(format!(
                "group {:?}: weight must be a positive number, not {}",
                self.name, self.weight
            )));
        }
        self.user_limits.validate()
    }
}

impl UserLimits {
    pub fn validate(&self) -> Result<(), QuotaError> {
        if let Some(h) = self.gpu_hours
            && !(h.is_finite() && h >= 0.0)
        {
            return Err(QuotaError::Invalid(format!(
                "gpu_hours must be zero or more, not {h}"
            )));
        }
        Ok(())
    }
}

/// Group and user names: what `lab user add` accepts.
pub fn validate_name(name: &str) -> Result<(), QuotaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(QuotaError::Invalid(format!(
            "{name:?} is not a valid name (letters, digits, '-', '_', '.')"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[group]]
name = "cohort-a"
weight = 2
guaranteed = { "H100-80GB" = 3 }
borrow_limit = { "H100-80GB" = 0, "*" = "unlimited" }
user_limits = { max_kernels = 2, max_gpus = 1, gpu_hours = 20, period = "week" }

[[user]]
name = "ada"
max_gpus = 4
"#;

    #[test]
    fn toml_and_yaml_round_trip() {
        let c = QuotaConfig::from_toml(EXAMPLE).unwrap();
        let g = c.group("cohort-a").unwrap();
        assert_eq!(g.ceiling("H100-80GB"), Amount::Finite(3));
        assert_eq!(g.ceiling("A100-40GB"), Amount::Unlimited);
        assert_eq!(g.user_limits.max_kernels, Some(Amount::Finite(2)));
        assert_eq!(
            c.user("ada").unwrap().limits.max_gpus,
            Some(Amount::Finite(4))
        );
        assert_eq!(QuotaConfig::from_toml(&c.to_toml()).unwrap(), c);
        assert_eq!(QuotaConfig::from_yaml(&c.to_yaml()).unwrap(), c);
    }

    #[test]
    fn bad_quotas_say_why() {
        let e = QuotaConfig::from_toml("[[group]]\nname = \"a\"\nweight = -1\n").unwrap_err();
        assert!(e.to_string().contains("weight"), "{e}");
        let e = QuotaConfig::from_toml("[[group]]\nname = \"a\"\n[[group]]\nname = \"a\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = QuotaConfig::from_toml("[[group]]\nname = \"../x\"\n").unwrap_err();
        assert!(e.to_string().contains("not a valid name"), "{e}");
        let e =
            QuotaConfig::from_yaml("group:\n- name: a\n  borrow_limit: {x: lots}\n").unwrap_err();
        assert!(e.to_string().contains("unlimited"), "{e}");
    }

    #[test]
    fn periods() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 15, 30, 0).unwrap(); // a Saturday
        let (s, e) = Period::Week.bounds(t);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap());
        let (s, e) = Period::Month.bounds(Utc.with_ymd_and_hms(2026, 12, 5, 1, 0, 0).unwrap());
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        let (s, _) = Period::Day.bounds(t);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap());
    }
}
