//! The term to simulate, as `lab simulate` reads it from TOML: cohorts with
//! their size, class hours, attendance, GPU guarantees and user caps. Only
//! the description; the sessions are [`super::term`]'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::quota::{Amount, GroupQuota, QuotaConfig, UserLimits};

/// A term: cohorts and the weeks with competitions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "ten")]
    pub weeks: u32,
    #[serde(default)]
    pub seed: u64,
    /// A user waiting longer than this for a GPU gives up.
    #[serde(default = "thirty")]
    pub patience_minutes: f64,
    /// Weeks (1-based) in which every user also competes.
    #[serde(default)]
    pub competition_weeks: Vec<u32>,
    #[serde(rename = "cohort")]
    pub cohorts: Vec<CohortSpec>,
}

/// `count` cohorts of `size` engineers each, alike.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CohortSpec {
    pub name: String,
    #[serde(default = "one_u32")]
    pub count: u32,
    pub size: u32,
    #[serde(default = "one_f64")]
    pub weight: f64,
    /// Per cohort.
    #[serde(default)]
    pub guaranteed: BTreeMap<String, u32>,
    #[serde(default)]
    pub borrow_limit: BTreeMap<String, Amount>,
    /// The GPU model its kernels ask for (`None`: any).
    pub model: Option<String>,
    #[serde(default = "one_u32")]
    pub gpus_per_kernel: u32,
    #[serde(default = "two")]
    pub classes_per_week: u32,
    #[serde(default = "three")]
    pub class_hours: f64,
    /// The share of the cohort that starts a kernel in class.
    #[serde(default = "attendance")]
    pub attendance: f64,
    #[serde(default = "two_f64")]
    pub self_study_per_week: f64,
    /// Self-study session length range, minutes.
    #[serde(default = "session")]
    pub session_minutes: [f64; 2],
    #[serde(default = "six")]
    pub competition_sessions_per_week: f64,
    #[serde(default)]
    pub user_limits: UserLimits,
}

fn ten() -> u32 {
    10
}
fn thirty() -> f64 {
    30.0
}
fn one_u32() -> u32 {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn two() -> u32 {
    2
}
fn two_f64() -> f64 {
    2.0
}
fn three() -> f64 {
    3.0
}
fn six() -> f64 {
    6.0
}
fn attendance() -> f64 {
    0.9
}
fn session() -> [f64; 2] {
    [30.0, 120.0]
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read the workload: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid workload: {0}")]
    Invalid(String),
}

impl Workload {
    pub fn from_toml(text: &str) -> Result<Self, WorkloadError> {
        let w: Workload = toml::from_str(text)?;
        if w.cohorts.is_empty() {
            return Err(WorkloadError::Invalid("no [[cohort]]".into()));
        }
        if w.weeks == 0 || w.weeks > 104 {
            return Err(WorkloadError::Invalid("weeks must be 1 to 104".into()));
        }
        for c in &w.cohorts {
            let bad =
                |what: &str| Err(WorkloadError::Invalid(format!("cohort {}: {what}", c.name)));
            if !(0.0..=1.0).contains(&c.attendance) {
                return bad("attendance must be between 0 and 1");
            }
            if !(c.session_minutes[0] > 0.0 && c.session_minutes[1] >= c.session_minutes[0]) {
                return bad("session_minutes must be [min, max] with 0 < min <= max");
            }
            if !(c.class_hours > 0.0 && c.class_hours <= 12.0) {
                return bad("class_hours must be between 0 and 12");
            }
            if u64::from(c.size) * u64::from(c.count) > 1_000_000 {
                return bad("more than a million users");
            }
        }
        Ok(w)
    }

    /// The quotas the workload declares, one group per cohort.
    pub fn quotas(&self) -> QuotaConfig {
        let mut q = QuotaConfig::default();
        for c in &self.cohorts {
            for i in 0..c.count {
                let mut g = GroupQuota::new(cohort_name(c, i));
                g.weight = c.weight;
                g.guaranteed = c.guaranteed.clone();
                g.borrow_limit = c.borrow_limit.clone();
                g.user_limits = c.user_limits.clone();
                q.groups.push(g);
            }
        }
        q
    }

    pub fn users(&self) -> u64 {
        self.cohorts
            .iter()
            .map(|c| u64::from(c.size) * u64::from(c.count))
            .sum()
    }
}

pub(super) fn cohort_name(c: &CohortSpec, i: u32) -> String {
    if c.count == 1 {
        c.name.clone()
    } else {
        format!("{}-{i}", c.name)
    }
}
