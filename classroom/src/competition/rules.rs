//! A competition's rules and the decisions that follow from them: when it
//! is open, whether a team may submit now (daily and total caps, per UTC
//! day), whether two teams may merge (Kaggle's rule), and when the private
//! leaderboard exists for participants.
//!
//! The gateway counts submissions inside one transaction with the insert,
//! so these checks hold under races; here they are pure.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use super::metric::Metric;
use super::solution::Columns;

/// Who reveals the private leaderboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reveal {
    /// It shows by itself once the competition ends.
    AtEnd,
    /// Staff reveal it, when they have checked the results.
    ByStaff,
}

/// What a competition allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub metric: Metric,
    #[serde(default)]
    pub columns: Columns,
    pub start: DateTime<Utc>,
    /// Last moment teams may merge (and people join teams).
    pub merger_deadline: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Counted submissions a team may make per UTC day.
    #[serde(default = "default_daily")]
    pub daily_cap: u32,
    /// Counted submissions a team may make in all.
    #[serde(default)]
    pub total_cap: Option<u32>,
    #[serde(default = "default_team_size")]
    pub team_size: u32,
    /// How many final submissions a team picks for the private board.
    #[serde(default = "default_selections")]
    pub selections: u32,
    /// Decimals shown on the boards.
    #[serde(default = "default_decimals")]
    pub decimals: u32,
    #[serde(default = "default_reveal")]
    pub reveal: Reveal,
    /// Largest submission file, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Whether participants may send prediction files (a code competition
    /// takes notebooks only: its test features are hidden).
    #[serde(default = "default_csv")]
    pub csv: bool,
    /// Whether, and within what, participants may send a notebook that
    /// the platform runs offline on the hidden test features.
    #[serde(default)]
    pub code: Option<CodeLimits>,
}

/// What one code submission's run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeLimits {
    /// The whole notebook's time, in seconds (Kaggle's is 9 hours).
    #[serde(default = "default_time_limit")]
    pub time_limit_s: u64,
    /// Memory of the kernel, in MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// GPUs the kernel gets, through the quotas like anyone's.
    #[serde(default)]
    pub gpus: u32,
}

impl Default for CodeLimits {
    fn default() -> Self {
        CodeLimits {
            time_limit_s: default_time_limit(),
            memory_mb: default_memory(),
            gpus: 0,
        }
    }
}

/// The longest run a competition may allow: 9 hours, as Kaggle's.
pub const MAX_TIME_LIMIT_S: u64 = 9 * 3600;

fn default_time_limit() -> u64 {
    3600
}
fn default_memory() -> u64 {
    4096
}
fn default_csv() -> bool {
    true
}

fn default_daily() -> u32 {
    5
}
fn default_team_size() -> u32 {
    5
}
fn default_selections() -> u32 {
    2
}
fn default_decimals() -> u32 {
    5
}
fn default_reveal() -> Reveal {
    Reveal::AtEnd
}
fn default_max_bytes() -> usize {
    100 << 20
}

/// Rules that contradict themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("competition rules: {0}")]
pub struct RulesError(pub String);

/// Where a competition is in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Upcoming,
    Open,
    Ended,
}

/// A submission the caps refuse, with what a participant needs to know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error(
        "your team has made {made} of its {cap} submissions today (UTC); the count resets at {resets_at}"
    )]
    Daily {
        made: u32,
        cap: u32,
        resets_at: DateTime<Utc>,
    },
    #[error(
        "your team has made {made} of its {cap} submissions in all (the competition's total cap)"
    )]
    Total { made: u32, cap: u32 },
    #[error("the competition is not open: {0}")]
    Closed(&'static str),
}

/// A merge the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("the merger deadline has passed")]
    Deadline,
    #[error("the merged team would have {size} members; the limit is {limit}")]
    TooBig { size: u32, limit: u32 },
    #[error(
        "the two teams have made {made} submissions together; a merged team may have made at most {allowed} (the daily cap times the {days} days so far)"
    )]
    TooManySubmissions { made: u32, allowed: u32, days: u32 },
}

impl Rules {
    /// Checks that the rules make sense together.
    pub fn check(&self) -> Result<(), RulesError> {
        let fail = |m: &str| Err(RulesError(m.to_string()));
        if self.start >= self.end {
            return fail("the start must come before the end");
        }
        if self.merger_deadline < self.start || self.merger_deadline > self.end {
            return fail("the merger deadline must fall between the start and the end");
        }
        if self.daily_cap == 0 || self.daily_cap > 1000 {
            return fail("the daily cap must be between 1 and 1000");
        }
        if self.total_cap == Some(0) {
            return fail("a total cap must be at least 1");
        }
        if self.team_size == 0 || self.team_size > 100 {
            return fail("the team size must be between 1 and 100");
        }
        if self.selections == 0 || self.selections > 10 {
            return fail("the number of final selections must be between 1 and 10");
        }
        if self.decimals > 12 {
            return fail("at most 12 decimals can be shown");
        }
        if self.max_bytes == 0 {
            return fail("the largest submission must be at least one byte");
        }
        if !self.csv && self.code.is_none() {
            return fail("a competition takes prediction files, notebooks, or both");
        }
        if let Some(code) = &self.code {
            if code.time_limit_s == 0 || code.time_limit_s > MAX_TIME_LIMIT_S {
                return fail("a code submission's time limit must be between 1 s and 9 hours");
            }
            if code.memory_mb < 64 {
                return fail("a code submission needs at least 64 MiB of memory");
            }
            if code.gpus > 16 {
                return fail("a code submission may have at most 16 GPUs");
            }
        }
        if self.columns.id.is_empty()
            || self.columns.target.is_empty()
            || self.columns.id == self.columns.target
        {
            return fail("the id and target columns need two different, non-empty names");
        }
        Ok(())
    }

    pub fn phase(&self, now: DateTime<Utc>) -> Phase {
        if now < self.start {
            Phase::Upcoming
        } else if now < self.end {
            Phase::Open
        } else {
            Phase::Ended
        }
    }

    /// Whether a team that has made `today` counted submissions this UTC
    /// day and `total` in all may submit at `now`.
    pub fn may_submit(&self, now: DateTime<Utc>, today: u32, total: u32) -> Result<(), CapError> {
        match self.phase(now) {
            Phase::Upcoming => return Err(CapError::Closed("it has not started")),
            Phase::Ended => return Err(CapError::Closed("it has ended")),
            Phase::Open => {}
        }
        if let Some(cap) = self.total_cap
            && total >= cap
        {
            return Err(CapError::Total { made: total, cap });
        }
        if today >= self.daily_cap {
            return Err(CapError::Daily {
                made: today,
                cap: self.daily_cap,
                resets_at: next_utc_midnight(now),
            });
        }
        Ok(())
    }

    /// Whether teams of `sizes` members that have made `made` counted
    /// submissions between them may merge at `now`: before the merger
    /// deadline, within the team size, and (Kaggle's rule) with no more
    /// submissions than the daily cap times the UTC days the competition
    /// has run, today included.
    pub fn may_merge(
        &self,
        now: DateTime<Utc>,
        sizes: (u32, u32),
        made: u32,
    ) -> Result<(), MergeError> {
        if now > self.merger_deadline || now >= self.end {
            return Err(MergeError::Deadline);
        }
        let size = sizes.0 + sizes.1;
        if size > self.team_size {
            return Err(MergeError::TooBig {
                size,
                limit: self.team_size,
            });
        }
        let days = self.days_so_far(now);
        let allowed = self.daily_cap.saturating_mul(days);
        if made > allowed {
            return Err(MergeError::TooManySubmissions {
                made,
                allowed,
                days,
            });
        }
        Ok(())
    }

    /// UTC days the competition has been open at `now`, today included.
    pub fn days_so_far(&self, now: DateTime<Utc>) -> u32 {
        if now < self.start {
            return 0;
        }
        let days = (now.date_naive() - self.start.date_naive()).num_days() + 1;
        u32::try_from(days).unwrap_or(u32::MAX)
    }

    /// Whether participants may see the private board and scores.
    pub fn private_visible(&self, now: DateTime<Utc>, revealed_by_staff: bool) -> bool {
        revealed_by_staff || (self.reveal == Reveal::AtEnd && now >= self.end)
    }
}

/// The first instant of the next UTC day.
pub fn next_utc_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    (now.date_naive() + Duration::days(1))
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// The first instant of `now`'s UTC day.
pub fn utc_day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive().and_time(NaiveTime::MIN).and_utc()
}
