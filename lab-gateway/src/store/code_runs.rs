//! The queue of code submissions in SQLite: a notebook's row is queued when
//! it is received, taken by one run at a time (`running`, with an attempt
//! number and a deadline), and ended by the run holding that attempt and
//! no other. What the gateway had running when it stopped is queued again
//! at its next start, and a run past its deadline is taken back, so no
//! submission stays running: each reaches exactly one final state.
//!
//! The platform's failure costs nothing (the row stops counting against the
//! caps); a notebook's own failure counts, as on Kaggle.

use rusqlite::{OptionalExtension as _, params};

use super::competitions::{ENTRY_COLUMNS, EntryState, entry_row};
use super::{EntryRow, Store, StoreError};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    Scored {
        public: f64,
        private: f64,
        runtime_min: i64,
    },
    /// The notebook's own failure (JSON: category, message, details): counted.
    Failed { error: String, runtime_min: i64 },
}

impl Store {
    /// Code submissions waiting for a run, oldest first: (id, competition).
    pub fn queued_code_entries(&self) -> Result<Vec<(i64, String)>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare(
                    "SELECT id, competition FROM competition_submissions
                     WHERE state = 'queued' ORDER BY id",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// Takes queued submission `id` for a run that must end by `deadline`:
    /// its row as taken (with the new attempt number), or `None` when it
    /// was no longer queued.
    pub fn take_code_entry(&self, id: i64, deadline: &str) -> Result<Option<EntryRow>, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let n = tx.execute(
                "UPDATE competition_submissions SET state = 'running', attempts = attempts + 1, deadline = ?2
                 WHERE id = ?1 AND state = 'queued'",
                params![id, deadline],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let row = tx
                .query_row(
                    &format!("SELECT {ENTRY_COLUMNS} FROM competition_submissions WHERE id = ?1"),
                    params![id],
                    entry_row,
                )
                .optional()?;
            tx.commit()?;
            Ok(row)
        })
    }

    /// Ends attempt `attempt` of running submission `id`; `false` when
    /// that attempt no longer holds it (a restart or the deadline took it
    /// back), and nothing is written.
    pub fn finish_code_entry(
        &self,
        id: i64,
        attempt: i64,
        end: &RunEnd,
    ) -> Result<bool, StoreError> {
        let done = self.with(|c| {
            let n = match end {
                RunEnd::Scored {
                    public,
                    private,
                    runtime_min,
                } => c.execute(
                    "UPDATE competition_submissions SET state = 'scored', public_score = ?3,
                         private_score = ?4, runtime_min = ?5, deadline = NULL, counted = 1
                     WHERE id = ?1 AND attempts = ?2 AND state = 'running'",
                    params![id, attempt, public, private, runtime_min],
                )?,
                RunEnd::Failed { error, runtime_min } => c.execute(
                    "UPDATE competition_submissions SET state = 'failed', error = ?3,
                         runtime_min = ?4, deadline = NULL, counted = 1
                     WHERE id = ?1 AND attempts = ?2 AND state = 'running'",
                    params![id, attempt, error, runtime_min],
                )?,
            };
            Ok(n == 1)
        });
        // Only a row that changed can change a board: the runner asks every few seconds.
        if matches!(&done, Ok(true)) {
            self.boards_changed();
        }
        done
    }

    /// The platform failed attempt `attempt` of `id`: queued again, or,
    /// once `max_attempts` are spent, failed with `error` and not counted.
    /// `false` when that attempt no longer holds it.
    pub fn release_code_entry(
        &self,
        id: i64,
        attempt: i64,
        max_attempts: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = self.with(|c| {
            let n = c.execute(
                "UPDATE competition_submissions SET
                     state = CASE WHEN attempts >= ?3 THEN 'failed' ELSE 'queued' END,
                     counted = CASE WHEN attempts >= ?3 THEN 0 ELSE counted END,
                     error = CASE WHEN attempts >= ?3 THEN ?4 ELSE error END,
                     deadline = NULL
                 WHERE id = ?1 AND attempts = ?2 AND state = 'running'",
                params![id, attempt, max_attempts, error],
            )?;
            Ok(n == 1)
        });
        // Only a row that changed can change a board: the runner asks every few seconds.
        if matches!(&done, Ok(true)) {
            self.boards_changed();
        }
        done
    }

    /// Takes back every running submission whose deadline is before `now`
    /// (every running one when `now` is `None`: a restart), except those in
    /// `running_here` (runs this process holds, which end by themselves),
    /// as [`Store::release_code_entry`] does. The ids taken back.
    pub fn reclaim_code_entries(
        &self,
        now: Option<&str>,
        running_here: &[i64],
        max_attempts: i64,
        error: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let done = self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let ids: Vec<i64> = tx
                .prepare(
                    "SELECT id FROM competition_submissions
                     WHERE state = 'running' AND (?1 IS NULL OR deadline < ?1)",
                )?
                .query_map(params![now], |r| r.get(0))?
                .filter(|id| !matches!(id, Ok(id) if running_here.contains(id)))
                .collect::<Result<_, _>>()?;
            for id in &ids {
                tx.execute(
                    "UPDATE competition_submissions SET
                         state = CASE WHEN attempts >= ?2 THEN 'failed' ELSE 'queued' END,
                         counted = CASE WHEN attempts >= ?2 THEN 0 ELSE counted END,
                         error = CASE WHEN attempts >= ?2 THEN ?3 ELSE error END,
                         deadline = NULL
                     WHERE id = ?1",
                    params![id, max_attempts, error],
                )?;
            }
            tx.commit()?;
            Ok(ids)
        });
        if matches!(&done, Ok(ids) if !ids.is_empty()) {
            self.boards_changed();
        }
        done
    }

    /// Where submission `id` stands in its competition's queue (1 is
    /// next); `None` once it is no longer queued.
    pub fn code_queue_position(&self, slug: &str, id: i64) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM competition_submissions
                 WHERE competition = ?1 AND state = 'queued' AND id <= ?2
                   AND EXISTS (SELECT 1 FROM competition_submissions WHERE id = ?2 AND state = 'queued')",
                params![slug, id],
                |r| r.get(0),
            )?;
            Ok((n > 0).then_some(n))
        })
    }

    /// Running code submissions per competition.
    pub fn running_code_entries(&self) -> Result<Vec<(i64, String)>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare(
                    "SELECT id, competition FROM competition_submissions WHERE state = ?1 ORDER BY id",
                )?
                .query_map(params![EntryState::Running.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CompetitionRow, EntryKind, Role};

    const ATTEMPTS: i64 = 3;

    fn queued_entry(store: &Store) -> i64 {
        store.add_user("ann", Role::Engineer, None).unwrap();
        store
            .create_competition(&CompetitionRow {
                slug: "c".into(),
                title: "C".into(),
                overview: String::new(),
                rules_text: String::new(),
                rules: "{}".into(),
                created_by: "tess".into(),
                solution: None,
                published: Some("x".into()),
                revealed: None,
                created: "x".into(),
                updated: "x".into(),
            })
            .unwrap();
        let team = store.join_competition("c", "ann").unwrap();
        let row = EntryRow {
            id: 0,
            competition: "c".into(),
            team: team.id,
            user_name: "ann".into(),
            description: String::new(),
            kind: EntryKind::Code,
            file: "n.ipynb".into(),
            folder: String::new(),
            sha256: String::new(),
            submitted: "2026-12-03T00:00:00.000000Z".into(),
            day: "2026-12-03".into(),
            state: EntryState::Queued,
            public_score: None,
            private_score: None,
            error: None,
            selected: false,
            counted: true,
            attempts: 0,
            deadline: None,
            runtime_min: None,
        };
        store
            .add_entry_if(&row, |_| Ok::<(), ()>(()))
            .unwrap()
            .unwrap()
            .0
    }

    fn state(store: &Store, id: i64) -> (EntryState, bool) {
        let e = store
            .entries("c", None)
            .unwrap()
            .into_iter()
            .find(|e| e.id == id)
            .unwrap();
        (e.state, e.counted)
    }

    /// Each attempt is ended only by itself; a passed deadline takes a row
    /// back unless this process runs it; the third platform failure fails it
    /// at no cost.
    #[test]
    fn a_code_run_is_ended_once_by_the_attempt_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        let id = queued_entry(&store);
        let past = "2000-01-01T00:00:00.000000Z";
        let first = store.take_code_entry(id, past).unwrap().unwrap();
        assert_eq!((first.state, first.attempts), (EntryState::Running, 1));
        assert!(
            store.take_code_entry(id, past).unwrap().is_none(),
            "taken once"
        );
        // Past its deadline, but this process still runs it: left alone.
        let now = "2026-12-03T00:00:00.000000Z";
        assert!(
            store
                .reclaim_code_entries(Some(now), &[id], ATTEMPTS, "x")
                .unwrap()
                .is_empty()
        );
        // Nobody runs it (a restart, another process's crash): queued again.
        assert_eq!(
            store
                .reclaim_code_entries(Some(now), &[], ATTEMPTS, "x")
                .unwrap(),
            vec![id]
        );
        assert_eq!(state(&store, id), (EntryState::Queued, true));
        let second = store
            .take_code_entry(id, "2999-01-01T00:00:00.000000Z")
            .unwrap()
            .unwrap();
        assert_eq!(second.attempts, 2);
        // The first attempt's late end is dropped.
        let end = RunEnd::Scored {
            public: 0.9,
            private: 0.8,
            runtime_min: 1,
        };
        assert!(!store.finish_code_entry(id, 1, &end).unwrap());
        // A deadline in the future is not passed.
        assert!(
            store
                .reclaim_code_entries(Some(now), &[], ATTEMPTS, "x")
                .unwrap()
                .is_empty()
        );
        // The platform fails it twice more: failed, and given back.
        assert!(store.release_code_entry(id, 2, ATTEMPTS, "p").unwrap());
        assert_eq!(state(&store, id), (EntryState::Queued, true));
        let third = store.take_code_entry(id, past).unwrap().unwrap();
        assert!(store.release_code_entry(id, 3, ATTEMPTS, "p").unwrap());
        assert_eq!(third.attempts, 3);
        assert_eq!(state(&store, id), (EntryState::Failed, false));
        assert!(!store.finish_code_entry(id, 3, &end).unwrap(), "ended once");
    }

    #[test]
    fn a_notebooks_own_failure_counts_and_a_scored_run_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        let id = queued_entry(&store);
        let taken = store
            .take_code_entry(id, "2999-01-01T00:00:00.000000Z")
            .unwrap()
            .unwrap();
        let failed = RunEnd::Failed {
            error: "{}".into(),
            runtime_min: 1,
        };
        assert!(
            store
                .finish_code_entry(id, taken.attempts, &failed)
                .unwrap()
        );
        assert_eq!(state(&store, id), (EntryState::Failed, true));
        assert!(
            !store
                .release_code_entry(id, taken.attempts, ATTEMPTS, "p")
                .unwrap()
        );
        assert_eq!(state(&store, id), (EntryState::Failed, true));
    }
}
