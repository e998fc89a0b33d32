//! What is wrong with a CSV file (a submission, or a solution a trainer
//! uploads): every problem found, each naming the line and column, the
//! first [`SHOWN`] kept with the count of the rest.
//!
//! Messages quote only what the file itself holds and what is public about
//! the competition (column names, ids, class labels): never a target value.

use std::fmt;

use serde::Serialize;

/// How many problems a rejection lists; the rest are counted.
pub const SHOWN: usize = 20;

/// One problem: where it is and what it is. Lines count from 1 with the
/// header as line 1, as an editor numbers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, &self.column) {
            (Some(line), Some(column)) => {
                write!(f, "line {line}, column {column:?}: {}", self.message)
            }
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            (None, Some(column)) => write!(f, "column {column:?}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// A file refused, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Rejection {
    /// The first [`SHOWN`] problems, in file order (file-wide ones last).
    pub problems: Vec<Problem>,
    /// How many more there were.
    pub more: usize,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        if self.more > 0 {
            write!(
                f,
                "; and {} more problem{}",
                self.more,
                if self.more == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

/// Collects problems while a file is read.
#[derive(Debug, Default)]
pub struct Problems {
    shown: Vec<Problem>,
    more: usize,
}

impl Problems {
    /// Adds one; a column name (which may come from the file) is cut to
    /// 80 characters.
    pub fn add(&mut self, line: Option<u64>, column: Option<&str>, message: impl Into<String>) {
        if self.shown.len() < SHOWN {
            self.shown.push(Problem {
                line,
                column: column.map(|c| match c.char_indices().nth(80) {
                    Some((cut, _)) => format!("{}…", &c[..cut]),
                    None => c.to_string(),
                }),
                message: message.into(),
            });
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    /// How many problems so far.
    pub fn count(&self) -> usize {
        self.shown.len() + self.more
    }

    /// `Ok(value)` when nothing was wrong.
    pub fn finish<T>(self, value: T) -> Result<T, Rejection> {
        if self.shown.is_empty() {
            Ok(value)
        } else {
            Err(self.rejection())
        }
    }

    /// The problems several readers of one file found, each reading its
    /// own run of lines in order, as one reader would have found them: the
    /// first [`SHOWN`] by line (each reader kept its first ones, which hold
    /// them), the rest counted.
    pub fn merged(parts: Vec<Problems>) -> Problems {
        let total: usize = parts.iter().map(Problems::count).sum();
        let mut shown: Vec<Problem> = parts.into_iter().flat_map(|p| p.shown).collect();
        shown.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
        shown.truncate(SHOWN);
        Problems {
            more: total - shown.len(),
            shown,
        }
    }

    pub fn rejection(self) -> Rejection {
        Rejection {
            problems: self.shown,
            more: self.more,
        }
    }
}

/// A rejection with one file-wide problem.
pub fn reject(message: impl Into<String>) -> Rejection {
    let mut problems = Problems::default();
    problems.add(None, None, message);
    problems.rejection()
}
