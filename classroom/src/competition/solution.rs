//! A competition's solution file: ids, targets and Kaggle's `Usage`
//! column (`Public`, `Private` or `Ignored`), checked once when staff
//! upload it, so that scoring a well-formed submission cannot fail.
//!
//! The solution is the one thing participants must never see: nothing read
//! from it leaves this module except through [`super::score`]'s numbers
//! and the ids, which are public (the test features carry them).

use std::collections::{BTreeSet, HashMap};

use super::column::{Column, Kind};
use super::metric::Metric;
use super::problems::{Problems, Rejection};
use super::table::Table;

/// The column names a competition's files use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Columns {
    /// The id column, in the solution and in submissions.
    pub id: String,
    /// The solution's target column; also the prediction column's name,
    /// except for a multiclass log loss (one column per class).
    pub target: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            id: "id".to_string(),
            target: "target".to_string(),
        }
    }
}

/// The name of the split column, as on Kaggle.
pub const USAGE: &str = "Usage";

/// Which leaderboard a solution row counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Public,
    Private,
    /// In the test set but scored on neither board.
    Ignored,
}

/// A checked solution.
#[derive(Debug, Clone)]
pub struct Solution {
    ids: Vec<String>,
    /// Id to row. foldhash, seeded per process: fast, and an id a
    /// participant chooses cannot aim at a bucket.
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    target: Column,
    public: Vec<usize>,
    private: Vec<usize>,
    /// Each board's targets (Public, Private, and Ignored's none), in its
    /// rows' order: made once, used by every submission's scoring.
    boards: [Column; 3],
    labels: BTreeSet<String>,
}

impl Solution {
    /// Reads and checks a solution for `metric`: an id, target and `Usage`
    /// column (others are ignored); unique, non-empty ids; targets of the
    /// metric's kind; both boards non-empty; and each board one on which the
    /// metric is defined (both classes present for a binary metric, two rows
    /// for R²).
    pub fn parse(
        bytes: &[u8],
        max_bytes: usize,
        columns: &Columns,
        metric: &Metric,
    ) -> Result<Solution, Rejection> {
        let table = Table::open(bytes, max_bytes)?;
        let mut problems = Problems::default();
        let at = |name: &str, problems: &mut Problems| {
            let found = table.position(name);
            if found.is_none() {
                problems.add(Some(1), Some(name), "is missing from the header");
            }
            found
        };
        let (id_at, target_at, usage_at) = (
            at(&columns.id, &mut problems),
            at(&columns.target, &mut problems),
            at(USAGE, &mut problems),
        );
        let (Some(id_at), Some(target_at), Some(usage_at)) = (id_at, target_at, usage_at) else {
            return Err(problems.rejection());
        };
        let kind = metric.target_kind();
        let mut solution = Solution {
            ids: Vec::new(),
            index: HashMap::default(),
            target: Column::new(kind, 0),
            public: Vec::new(),
            private: Vec::new(),
            boards: [
                Column::new(kind, 0),
                Column::new(kind, 0),
                Column::new(kind, 0),
            ],
            labels: BTreeSet::new(),
        };
        // Each kept row's line, for a repeated id's message.
        let mut lines: Vec<u64> = Vec::new();
        let _ = table.rows(&mut problems, |row, problems| {
            let id = row.field(id_at);
            if id.is_empty() {
                problems.add(Some(row.line), Some(&columns.id), "is empty");
                return;
            }
            if let Some(first) = solution.index.get(id).map(|&i| lines[i]) {
                problems.add(
                    Some(row.line),
                    Some(&columns.id),
                    format!("id {id:?} is also on line {first}"),
                );
                return;
            }
            let raw_usage = row.field(usage_at);
            let is = |word: &str| raw_usage.eq_ignore_ascii_case(word);
            let usage = match () {
                () if is("public") => Usage::Public,
                () if is("private") => Usage::Private,
                () if is("ignored") => Usage::Ignored,
                () => {
                    problems.add(
                        Some(row.line),
                        Some(USAGE),
                        format!("{raw_usage:?} is not Public, Private or Ignored"),
                    );
                    return;
                }
            };
            if let Err(e) = solution.target.push(kind, row.field(target_at)) {
                problems.add(Some(row.line), Some(&columns.target), e);
                return;
            }
            let index = solution.ids.len();
            lines.push(row.line);
            solution.index.insert(id.to_string(), index);
            solution.ids.push(id.to_string());
            match usage {
                Usage::Public => solution.public.push(index),
                Usage::Private => solution.private.push(index),
                Usage::Ignored => {}
            }
            if kind == Kind::Label && !solution.labels.contains(row.field(target_at)) {
                solution.labels.insert(row.field(target_at).to_string());
            }
        });
        if problems.is_empty() {
            solution.check_boards(metric, &columns.target, &mut problems);
        }
        solution.boards = [
            solution.target.select(&solution.public),
            solution.target.select(&solution.private),
            Column::new(kind, 0),
        ];
        problems.finish(solution)
    }

    /// Refuses a solution on which some valid submission would not score:
    /// a failed scoring must never tell a participant anything about the
    /// boards, so every way to fail is closed here, at upload.
    fn check_boards(&self, metric: &Metric, target: &str, problems: &mut Problems) {
        // A binary average: exactly two labels over all rows, one of them the
        // positive one (predictions are held to those two), so no label a
        // participant submits can tell one board from the other.
        if let Metric::Rates {
            average: super::Average::Binary { positive },
            ..
        } = metric
            && (self.labels.len() != 2 || !self.labels.contains(positive))
        {
            problems.add(
                None,
                Some(target),
                format!("a binary average needs exactly two labels in all rows, one of them the positive label {positive:?}"),
            );
        }
        for (board, rows) in [("Public", &self.public), ("Private", &self.private)] {
            if rows.is_empty() {
                problems.add(
                    None,
                    Some(USAGE),
                    format!("no row is {board}; both boards need rows"),
                );
                continue;
            }
            let labels = |rows: &[usize]| -> BTreeSet<&str> {
                rows.iter().filter_map(|r| self.target.label(*r)).collect()
            };
            let present = labels(rows);
            match metric {
                // sklearn refuses ROC AUC on one class.
                Metric::RocAuc { positive }
                    if !present.contains(positive.as_str()) || present.len() < 2 =>
                {
                    problems.add(
                        None,
                        Some(target),
                        format!(
                            "the {board} rows need both the positive label {positive:?} and another"
                        ),
                    );
                }
                // A board with one rating makes the kappa undefined for a
                // submission that predicts that rating everywhere.
                Metric::QuadraticWeightedKappa => {
                    let ratings: BTreeSet<i64> = match &self.target {
                        Column::Integers(v) => rows.iter().map(|r| v[*r]).collect(),
                        _ => BTreeSet::new(),
                    };
                    if ratings.len() < 2 {
                        problems.add(
                            None,
                            Some(target),
                            format!("the {board} rows need at least two different ratings"),
                        );
                    }
                }
                _ => {}
            }
            if let Some(classes) = metric.declared_classes()
                && let Some(stray) = labels(rows)
                    .into_iter()
                    .find(|l| !classes.iter().any(|c| c == l))
            {
                problems.add(
                    None,
                    Some(target),
                    format!("label {stray:?} is not one of the metric's classes"),
                );
            }
            if *metric == Metric::R2 && rows.len() < 2 {
                problems.add(
                    None,
                    Some(USAGE),
                    format!("R² needs at least two {board} rows"),
                );
            }
        }
    }

    /// How many rows a submission must have: one per id, Ignored included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The row of `id`, if the solution has it.
    pub fn row_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The ids, in the solution's order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The labels a predicted label may take, where the metric limits them:
    /// a binary average's two (sklearn refuses a third). Other label metrics
    /// take any label, as sklearn does, so no answer tells a participant
    /// which labels the solution holds.
    pub fn allowed_labels(&self, metric: &Metric) -> Option<BTreeSet<String>> {
        match metric {
            Metric::Rates {
                average: super::Average::Binary { positive },
                ..
            } => {
                let mut allowed = self.labels.clone();
                allowed.insert(positive.clone());
                Some(allowed)
            }
            _ => None,
        }
    }

    /// The targets of one board, in [`Solution::board`]'s order.
    pub(super) fn board_target(&self, usage: Usage) -> &Column {
        match usage {
            Usage::Public => &self.boards[0],
            Usage::Private => &self.boards[1],
            Usage::Ignored => &self.boards[2],
        }
    }

    /// The rows of one board (their positions, nothing of their targets).
    pub fn board(&self, usage: Usage) -> &[usize] {
        match usage {
            Usage::Public => &self.public,
            Usage::Private => &self.private,
            Usage::Ignored => &[],
        }
    }
}
