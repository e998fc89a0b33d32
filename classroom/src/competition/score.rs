//! Scoring a checked submission on both boards at once, as Kaggle does:
//! the private score exists from the moment of submission, and what the
//! gateway shows of it is decided elsewhere (the reveal).

use serde::Serialize;

use super::Undefined;
use super::metric::Metric;
use super::solution::{Solution, Usage};
use super::submission::Predictions;

/// A submission's two scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    pub public: f64,
    pub private: f64,
}

/// A board on which the metric is undefined for this submission. The
/// solution's checks at upload leave no way to get here with a valid
/// submission; if one is found, it is the platform's fault, not the
/// participant's. Its message names no board (which board failed would
/// tell something about that board's rows); `board` is for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the submission could not be scored")]
pub struct ScoringError {
    pub board: &'static str,
    pub reason: &'static str,
}

/// `predictions` scored by `metric` on the Public and the Private rows
/// (moved into each board's columns, not copied: a submission is scored once).
pub fn score(
    metric: &Metric,
    solution: &Solution,
    predictions: Predictions,
) -> Result<Scores, ScoringError> {
    let mut columns = predictions.columns;
    let mut on = |usage: Usage, board: &'static str| {
        let rows = solution.board(usage);
        let board_columns: Vec<_> = columns.iter_mut().map(|c| c.take_rows(rows)).collect();
        metric
            .score(solution.board_target(usage), &board_columns)
            .map_err(|Undefined(reason)| ScoringError { board, reason })
    };
    Ok(Scores {
        public: on(Usage::Public, "Public")?,
        private: on(Usage::Private, "Private")?,
    })
}
