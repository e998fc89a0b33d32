//! The crate's two error types: a notebook we refuse ([`FormatError`]) and
//! a submission the dates refuse ([`PolicyError`]).
//!
//! They are separate because they reach different people: a format error
//! goes to whoever uploaded the notebook (a trainer's source, an engineer's
//! submission), a policy error to an engineer submitting at the wrong time.
//! Both carry enough context to be shown as they are: the gateway maps them
//! to a 4xx with `to_string()` as the reason.

use chrono::{DateTime, Utc};

/// A notebook that is not one we accept. Cell numbers in messages count
/// from 1, as a person counts the cells on screen; `index` counts from 0.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes are not JSON (or nest deeper than serde_json's 128 levels,
    /// or hold a number JSON can't represent as f64).
    #[error("not valid JSON: {0}")]
    Json(String),
    /// JSON, but not an nbformat 4 notebook.
    #[error("not an nbformat 4 notebook: {0}")]
    NotNotebook(String),
    /// One cell is malformed or breaks one of nbgrader's rules.
    #[error("cell {}{}: {problem}", .index + 1, grade_id_suffix(.grade_id))]
    Cell {
        index: usize,
        grade_id: Option<String>,
        problem: String,
    },
    /// No kernel we run matches the notebook's metadata.
    #[error(
        "unsupported kernel: kernelspec name {}, language {} (expected python3, academy-rust or academy-candle)",
        quoted(.kernel),
        quoted(.language)
    )]
    UnknownLanguage {
        kernel: Option<String>,
        language: Option<String>,
    },
}

fn grade_id_suffix(grade_id: &Option<String>) -> String {
    match grade_id {
        Some(id) => format!(" (grade_id {id:?})"),
        None => String::new(),
    }
}

fn quoted(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "missing".to_owned(),
    }
}

impl FormatError {
    pub(crate) fn cell(index: usize, grade_id: Option<&str>, problem: impl Into<String>) -> Self {
        FormatError::Cell {
            index,
            grade_id: grade_id.map(str::to_owned),
            problem: problem.into(),
        }
    }
}

/// A submission refused by the assignment's dates or caps, or a policy
/// that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("submissions are not open yet: they open at {}", human(.opens))]
    NotOpen { opens: DateTime<Utc> },
    #[error("submissions are closed: they closed at {}", human(.locked))]
    Locked { locked: DateTime<Utc> },
    #[error(
        "you have made {cap} submissions to this assignment today, the most a day; the next one can be made from {}",
        human(.next)
    )]
    DailyCap { cap: u32, next: DateTime<Utc> },
    #[error("you have made {cap} submissions to this assignment, the most it takes")]
    TotalCap { cap: u32 },
    #[error("invalid policy: {field} {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A date as a person reads it, always in UTC so nobody guesses the zone.
pub(crate) fn human(date: &DateTime<Utc>) -> String {
    date.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
