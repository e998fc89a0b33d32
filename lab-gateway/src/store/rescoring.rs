//! Changing a competition's recorded submissions after the fact: staff
//! rescore them when the solution or the metric changed, and a participant
//! (or staff) cancels a notebook still waiting for its run.
//!
//! A rescored row keeps its id, submitter and day; only its state, scores,
//! error and whether it counts change, and a row that no longer scores
//! loses its final selection. A cancelled row is failed at no cost.

use rusqlite::{OptionalExtension as _, params};

use super::competitions::{ENTRY_COLUMNS, entry_row};
use super::{EntryRow, Store, StoreError};

/// What a new check and score of a recorded file gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Rescored {
    Scored {
        public: f64,
        private: f64,
    },
    /// A prediction file the checks now refuse (JSON error): not counted.
    Rejected {
        error: String,
    },
    /// A notebook's output the checks now refuse (JSON error): its own
    /// failure, so it still counts.
    Failed {
        error: String,
    },
}

impl Store {
    /// Submission `id` of competition `slug`, if there is one.
    pub fn entry(&self, slug: &str, id: i64) -> Result<Option<EntryRow>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM competition_submissions WHERE id = ?1 AND competition = ?2"
                ),
                params![id, slug],
                entry_row,
            )
            .optional()?)
        })
    }

    /// Records `result` for scored submission `id`; `false` when the row is
    /// no longer scored (nothing is written).
    pub fn rescore_entry(&self, id: i64, result: &Rescored) -> Result<bool, StoreError> {
        let done = self.with(|c| {
            let n = match result {
                Rescored::Scored { public, private } => c.execute(
                    "UPDATE competition_submissions SET public_score = ?2, private_score = ?3
                     WHERE id = ?1 AND state = 'scored'",
                    params![id, public, private],
                )?,
                Rescored::Rejected { error } => c.execute(
                    "UPDATE competition_submissions SET state = 'rejected', error = ?2, counted = 0,
                         selected = 0, public_score = NULL, private_score = NULL
                     WHERE id = ?1 AND state = 'scored'",
                    params![id, error],
                )?,
                Rescored::Failed { error } => c.execute(
                    "UPDATE competition_submissions SET state = 'failed', error = ?2, counted = 1,
                         selected = 0, public_score = NULL, private_score = NULL
                     WHERE id = ?1 AND state = 'scored'",
                    params![id, error],
                )?,
            };
            Ok(n == 1)
        });
        self.boards_changed();
        done
    }

    /// Cancels queued code submission `id` of competition `slug` (of
    /// `team` only, unless `None`): failed with "cancelled", not counted.
    /// `false` when there is no such queued row (it ran meanwhile, or it is
    /// not the team's).
    pub fn cancel_code_entry(
        &self,
        slug: &str,
        id: i64,
        team: Option<i64>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = self.with(|c| {
            let n = c.execute(
                "UPDATE competition_submissions SET state = 'failed', counted = 0, error = ?4
                 WHERE id = ?1 AND competition = ?2 AND (?3 IS NULL OR team = ?3) AND state = 'queued'",
                params![id, slug, team, error],
            )?;
            Ok(n == 1)
        });
        if matches!(&done, Ok(true)) {
            self.boards_changed();
        }
        done
    }
}
