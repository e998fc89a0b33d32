//! A code submission's run, judged: how it failed, in the categories a
//! participant is told (Kaggle's: timeout, the notebook's error, out of
//! memory, no `submission.csv`, a file the checks refuse), and its runtime
//! as shown (rounded up to the minute, so the time a run took cannot carry
//! what the hidden test features hold).
//!
//! A failure of the participant's code counts against the caps, as on
//! Kaggle; the platform's own failures are the gateway's and never reach
//! this type.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::problems::Rejection;

/// The file a code submission's notebook must write, in its own folder.
pub const SUBMISSION_FILE: &str = "submission.csv";

/// Lines and characters of a notebook's traceback shown with its failure.
const TRACEBACK_LINES: usize = 40;
const TRACEBACK_CHARS: usize = 4000;

/// Why a code submission has no score.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The notebook ran past the competition's time limit.
    Timeout { limit_s: u64 },
    /// A cell raised an error: the notebook's own, with its traceback.
    Error {
        ename: String,
        evalue: String,
        traceback: Vec<String>,
    },
    /// The kernel died while a cell ran: most often, out of its memory.
    OutOfMemory { memory_mb: u64 },
    /// The notebook finished without writing `submission.csv`.
    NoSubmissionFile,
    /// `submission.csv` was written and the checks refused it.
    Format(Rejection),
}

/// The category of a failure, as shown and as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Timeout,
    Error,
    OutOfMemory,
    NoSubmissionFile,
    FormatError,
}

impl Failure {
    pub fn category(&self) -> Category {
        match self {
            Failure::Timeout { .. } => Category::Timeout,
            Failure::Error { .. } => Category::Error,
            Failure::OutOfMemory { .. } => Category::OutOfMemory,
            Failure::NoSubmissionFile => Category::NoSubmissionFile,
            Failure::Format(_) => Category::FormatError,
        }
    }

    /// One sentence for the participant.
    pub fn message(&self) -> String {
        match self {
            Failure::Timeout { limit_s } => format!(
                "the notebook ran past the competition's time limit of {}",
                human(*limit_s)
            ),
            Failure::Error { ename, evalue, .. } => {
                format!("the notebook raised an error: {ename}: {evalue}")
            }
            Failure::OutOfMemory { memory_mb } => format!(
                "the kernel died while a cell ran, most often from using more than its {memory_mb} MiB of memory"
            ),
            Failure::NoSubmissionFile => {
                format!("the notebook finished without writing {SUBMISSION_FILE} in its folder")
            }
            Failure::Format(r) => format!("{SUBMISSION_FILE} is refused: {r}"),
        }
    }

    /// The failure as stored with the submission and shown to its team:
    /// the category, the message, and the traceback or the problems.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"category": self.category(), "message": self.message()});
        match self {
            Failure::Error { traceback, .. } => v["traceback"] = json!(trim(traceback)),
            Failure::Format(r) => {
                v["problems"] = json!(r.problems);
                v["more"] = json!(r.more);
            }
            _ => {}
        }
        v
    }
}

/// The traceback's last lines, within [`TRACEBACK_LINES`] and
/// [`TRACEBACK_CHARS`]: where the error was raised is at the end.
fn trim(traceback: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut chars = 0;
    for line in traceback.iter().rev().take(TRACEBACK_LINES) {
        let n = line.chars().count();
        if chars + n > TRACEBACK_CHARS {
            let room = TRACEBACK_CHARS.saturating_sub(chars);
            if room > 0 {
                kept.push(line.chars().take(room).collect());
            }
            break;
        }
        chars += n;
        kept.push(line.clone());
    }
    kept.reverse();
    kept
}

/// A run's time as shown: whole minutes, rounded up, at least one.
pub fn shown_runtime(took: Duration) -> u64 {
    took.as_secs().div_ceil(60).max(1)
}

fn human(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_shown_in_whole_minutes_rounded_up() {
        assert_eq!(shown_runtime(Duration::from_millis(200)), 1);
        assert_eq!(shown_runtime(Duration::from_secs(60)), 1);
        assert_eq!(shown_runtime(Duration::from_secs(61)), 2);
        assert_eq!(shown_runtime(Duration::from_secs(9 * 3600)), 540);
    }

    #[test]
    fn a_long_traceback_keeps_its_end() {
        let tb: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        let kept = trim(&tb);
        assert_eq!(kept.len(), TRACEBACK_LINES);
        assert_eq!(kept.last().unwrap(), "line 99");
        let wide = vec!["x".repeat(10_000)];
        assert_eq!(trim(&wide)[0].len(), TRACEBACK_CHARS);
    }

    #[test]
    fn failures_say_their_category() {
        let f = Failure::Timeout { limit_s: 7200 };
        assert_eq!(f.to_json()["category"], "timeout");
        assert!(f.message().contains("2 h"));
        assert_eq!(
            Failure::NoSubmissionFile.to_json()["category"],
            "no_submission_file"
        );
    }
}
