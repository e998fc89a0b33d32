//! An assignment's dates and rules: when engineers may submit, which
//! submission counts, what lateness costs, and when hidden-test results
//! show. Serde types, stored by the gateway as JSON: enums with data are
//! tagged `{"kind": "percent", ...}`, plain ones are snake_case strings.
//!
//! nbgrader's model, for comparison: one due date per assignment; an
//! extension per student moves it (`duedate + extension`); seconds late =
//! `max(0, timestamp - duedate)`; the `LateSubmissionPlugin` gives a
//! penalty per notebook, `none` (0) or `zero` (the whole score), and
//! `AssignLatePenalties` clamps it to `[0, score]`. Courses write plugins
//! for anything else (the docs' example takes one point per hour, rounded).
//! nbgrader has no open or lock date and never refuses a submission.
//!
//! Here: an optional open date (submitting earlier is refused), due date
//! and lock date (submitting from then on is refused); an extension moves
//! due *and* lock. A submission exactly at the due date is on time, and
//! one exactly at the lock date is refused.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{PolicyError, human};

/// An assignment's dates, all optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dates {
    pub open: Option<DateTime<Utc>>,
    pub due: Option<DateTime<Utc>>,
    pub lock: Option<DateTime<Utc>>,
}

/// The unit a percentage penalty is charged per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyUnit {
    Day,
    Hour,
}

impl PenaltyUnit {
    fn seconds(self) -> i64 {
        match self {
            PenaltyUnit::Day => 86_400,
            PenaltyUnit::Hour => 3_600,
        }
    }
}

/// What a late submission costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LatePenalty {
    /// nbgrader's `none`.
    #[default]
    None,
    /// nbgrader's `zero`: the whole score.
    Zero,
    /// `percent` of the maximum score per started `per`, at most `cap`
    /// percent in all.
    Percent {
        percent: f64,
        per: PenaltyUnit,
        cap: f64,
    },
}

impl LatePenalty {
    /// Points taken off `score` (out of `max`) for submitting at
    /// `submitted` against the (extended) `due` date.
    ///
    /// Every started unit counts: one second late is one day (or hour)
    /// late, 24 h and 1 s is two days. A percentage is of `max`, as LMSs
    /// charge it, capped at `cap` percent. The result is clamped to
    /// `[0, score]` like nbgrader's `_check_late_penalty`, so a total never
    /// drops below 0; nonsense inputs (NaN, negative) give 0.
    pub fn deduction(
        &self,
        score: f64,
        max: f64,
        due: DateTime<Utc>,
        submitted: DateTime<Utc>,
    ) -> f64 {
        let late = submitted.signed_duration_since(due);
        if late <= Duration::zero() || !score.is_finite() || score <= 0.0 {
            return 0.0;
        }
        let raw = match *self {
            LatePenalty::None => 0.0,
            LatePenalty::Zero => score,
            LatePenalty::Percent { percent, per, cap } => {
                let units = started_units(late, per.seconds());
                let pct = (percent * units).min(cap).clamp(0.0, 100.0);
                if pct.is_nan() || !max.is_finite() {
                    0.0
                } else {
                    max * pct / 100.0
                }
            }
        };
        if raw.is_nan() {
            0.0
        } else {
            raw.clamp(0.0, score)
        }
    }
}

fn started_units(late: Duration, unit_seconds: i64) -> f64 {
    let seconds = late.num_seconds();
    let partial = late.subsec_nanos() > 0;
    let whole = seconds / unit_seconds;
    let started = seconds % unit_seconds > 0 || partial;
    whole as f64 + if started { 1.0 } else { 0.0 }
}

/// Which of an engineer's graded submissions counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counts {
    #[default]
    Latest,
    Best,
    First,
}

/// When an engineer sees the results of cells with hidden tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenResults {
    Never,
    /// After the engineer's (extended) due date, or once grades are
    /// published.
    #[default]
    AfterDue,
    WhenPublished,
}

/// Everything about how an assignment is submitted and graded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    pub dates: Dates,
    pub late: LatePenalty,
    pub counts: Counts,
    pub hidden: HiddenResults,
    /// nbgrader's `Execute.timeout`: 30 s per cell, then interrupt.
    pub cell_timeout_s: u64,
    /// For the whole notebook (nbgrader has none).
    pub total_timeout_s: u64,
    /// Per cell, see [`crate::limit`].
    pub output_limit_bytes: u64,
    /// The memory each process of the grading kernel may allocate, in MiB
    /// (nbgrader has none): past it an allocation fails in the cell that
    /// made it (Python's `MemoryError`), which is then an error. Between
    /// [`MEMORY_MB_MIN`] and [`MEMORY_MB_MAX`]; 2048 by default.
    pub memory_mb: u64,
    /// At most this many submissions per engineer in a UTC day (Kaggle's
    /// daily cap): feedback on hidden tests must not become an oracle to
    /// query at will. None by default.
    pub submissions_per_day: Option<u32>,
    /// At most this many submissions per engineer in all. None by default.
    pub max_submissions: Option<u32>,
}

/// The least [`Policy::memory_mb`]: what the kernels themselves hold before
/// any cell runs (academy-rust's, with evcxr, about 600 MiB), with room.
pub const MEMORY_MB_MIN: u64 = 1024;
/// The most [`Policy::memory_mb`] (1 TiB).
pub const MEMORY_MB_MAX: u64 = 1 << 20;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            dates: Dates::default(),
            late: LatePenalty::None,
            counts: Counts::Latest,
            hidden: HiddenResults::AfterDue,
            cell_timeout_s: 30,
            total_timeout_s: 600,
            output_limit_bytes: 1024 * 1024,
            memory_mb: 2048,
            submissions_per_day: None,
            max_submissions: None,
        }
    }
}

impl Policy {
    /// Checks the policy makes sense: dates in order (open <= due <=
    /// lock), percentages in 0..=100, timeouts and limits above 0, memory
    /// within [`MEMORY_MB_MIN`]..=[`MEMORY_MB_MAX`].
    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |field, reason: &str| {
            Err(PolicyError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        let Dates { open, due, lock } = self.dates;
        if let (Some(o), Some(d)) = (open, due)
            && o > d
        {
            return invalid("dates.due", "is before dates.open");
        }
        if let (Some(d), Some(l)) = (due, lock)
            && d > l
        {
            return invalid("dates.lock", "is before dates.due");
        }
        if let (Some(o), Some(l)) = (open, lock)
            && o >= l
        {
            return invalid("dates.lock", "is not after dates.open");
        }
        if let LatePenalty::Percent { percent, cap, .. } = self.late {
            if !(0.0..=100.0).contains(&percent) {
                return invalid("late.percent", "must be between 0 and 100");
            }
            if !(0.0..=100.0).contains(&cap) {
                return invalid("late.cap", "must be between 0 and 100");
            }
        }
        if self.cell_timeout_s == 0 || self.total_timeout_s == 0 {
            return invalid("timeouts", "must be at least 1 second");
        }
        if self.output_limit_bytes == 0 {
            return invalid("output_limit_bytes", "must be above 0");
        }
        if self.submissions_per_day == Some(0) || self.max_submissions == Some(0) {
            return invalid(
                "submissions_per_day",
                "and max_submissions must be above 0 (leave them out for no cap)",
            );
        }
        if !(MEMORY_MB_MIN..=MEMORY_MB_MAX).contains(&self.memory_mb) {
            return invalid(
                "memory_mb",
                &format!("must be between {MEMORY_MB_MIN} and {MEMORY_MB_MAX} (MiB)"),
            );
        }
        Ok(())
    }
}

/// Where an engineer stands against the dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Window {
    NotOpen {
        opens: DateTime<Utc>,
    },
    Open,
    /// Past the (extended) due date, before the lock date.
    Late {
        due: DateTime<Utc>,
    },
    Locked {
        locked: DateTime<Utc>,
    },
}

/// `date` moved by a (non-negative) extension; `None` past the end of
/// representable time, which then never comes.
fn extend(date: Option<DateTime<Utc>>, extension: Option<Duration>) -> Option<DateTime<Utc>> {
    let by = extension
        .unwrap_or_else(Duration::zero)
        .max(Duration::zero());
    date?.checked_add_signed(by)
}

/// The window at `now` (module docs for the boundaries).
pub fn window(dates: &Dates, extension: Option<Duration>, now: DateTime<Utc>) -> Window {
    let due = extend(dates.due, extension);
    let lock = extend(dates.lock, extension);
    match (dates.open, lock, due) {
        (Some(opens), _, _) if now < opens => Window::NotOpen { opens },
        (_, Some(locked), _) if now >= locked => Window::Locked { locked },
        (_, _, Some(due)) if now > due => Window::Late { due },
        _ => Window::Open,
    }
}

/// [`window`], refusing a submission before opening or after locking with
/// a message that names the date.
pub fn may_submit(
    dates: &Dates,
    extension: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<Window, PolicyError> {
    match window(dates, extension, now) {
        Window::NotOpen { opens } => Err(PolicyError::NotOpen { opens }),
        Window::Locked { locked } => Err(PolicyError::Locked { locked }),
        open => Ok(open),
    }
}

/// Whether one more submission is within the policy's caps, given when the
/// engineer's earlier submissions to the assignment were made (the
/// server's clock). The day is the UTC calendar day, as on Kaggle: the
/// daily allowance comes back at midnight UTC, not 24 hours after a
/// submission.
pub fn within_caps(
    policy: &Policy,
    earlier: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<(), PolicyError> {
    if let Some(cap) = policy.max_submissions
        && earlier.len() >= cap as usize
    {
        return Err(PolicyError::TotalCap { cap });
    }
    if let Some(cap) = policy.submissions_per_day {
        let today = now.date_naive();
        let used = earlier.iter().filter(|t| t.date_naive() == today).count();
        if used >= cap as usize {
            let next = (today + Duration::days(1))
                .and_time(chrono::NaiveTime::MIN)
                .and_utc();
            return Err(PolicyError::DailyCap { cap, next });
        }
    }
    Ok(())
}

/// Whether hidden-test results may be shown at `now`: never; after the
/// engineer's (extended) due date, or once published (with no due date,
/// only once published); or once published.
pub fn hidden_visible(
    policy: &Policy,
    extension: Option<Duration>,
    now: DateTime<Utc>,
    published: bool,
) -> bool {
    match policy.hidden {
        HiddenResults::Never => false,
        HiddenResults::WhenPublished => published,
        HiddenResults::AfterDue => {
            published || extend(policy.dates.due, extension).is_some_and(|due| now > due)
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::NotOpen { opens } => write!(f, "opens at {}", human(opens)),
            Window::Open => f.write_str("open"),
            Window::Late { due } => write!(f, "late: it was due at {}", human(due)),
            Window::Locked { locked } => write!(f, "closed at {}", human(locked)),
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
