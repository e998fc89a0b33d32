//! Competitions (issue 16), the decisions: a metric, the hidden
//! solution it is computed against, the check every submission passes
//! before it is scored, the caps and the boards. Pure functions, no storage.
//!
//! 1. [`metric`]: which metric with which settings ([`MetricSpec`] as
//!    configured, [`Metric`] once checked), what it needs of each column.
//! 2. [`solution`]: the solution file with Kaggle's `Usage` column, checked
//!    at upload so that scoring a valid submission is defined.
//! 3. [`submission`]: a participant's CSV checked line by line; a
//!    [`Rejection`] names line and column for each problem.
//! 4. [`mod@score`]: the public and the private score, both at submit.
//! 5. [`rules`]: dates, caps per UTC day, merges, the reveal.
//! 6. [`board`]: public and private leaderboards and the shake-up.
//! 7. [`code`]: a code submission's failure categories and shown runtime.
//!
//! The metrics ([`labels`], [`ranking`], [`regression`]) are scikit-learn
//! 1.9's with default arguments (MAP@K: Kaggle's ml_metrics), and
//! `tests/test_competition_metrics.py` holds them to it to 1e-9.

pub mod board;
pub mod code;
pub mod column;
pub mod hidden;
pub mod labels;
pub mod metric;
pub mod problems;
pub mod ranking;
pub mod regression;
pub mod rules;
pub mod score;
pub mod solution;
pub mod submission;

mod sum;
mod table;

#[cfg(test)]
mod parts_tests;
#[cfg(test)]
mod tests;

pub use board::{Move, Scored, Standing};
pub use column::{Column, Kind};
pub use labels::{Average, Rate};
pub use metric::{METRIC_NAMES, Metric, MetricSpec, MetricSpecError};
pub use problems::{Problem, Rejection};
pub use rules::{CapError, CodeLimits, MergeError, Phase, Reveal, Rules, RulesError};
pub use score::{Scores, ScoringError, score};
pub use solution::{Columns, Solution, USAGE, Usage};
pub use submission::Predictions;

/// A metric that has no value on the rows given, with why (only one class
/// present for ROC AUC, no rows at all, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undefined(pub &'static str);
