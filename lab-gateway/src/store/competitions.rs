//! Competitions in SQLite: the competition, its teams and members, and its
//! submissions with both scores.
//!
//! A CSV's row is written once, whole, after its file is on disk and it
//! has been checked and scored (scoring a CSV takes milliseconds), so a
//! gateway killed at any moment leaves either no row (the participant was
//! not answered, nothing counted) or a final one; never one stuck half way.
//! A notebook's row is written queued, after its file is on disk; its run
//! is `code_runs`'.
//! The caps are checked in the same transaction as the insert, so fifty
//! submissions at once cannot pass a cap of five.

use rusqlite::{OptionalExtension as _, Row, params};

use super::{Store, StoreError, now};

/// A competition as stored. `rules` is `classroom::competition::Rules` as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct CompetitionRow {
    pub slug: String,
    pub title: String,
    pub overview: String,
    pub rules_text: String,
    pub rules: String,
    pub created_by: String,
    /// The solution's SHA-256, once uploaded.
    pub solution: Option<String>,
    pub published: Option<String>,
    pub revealed: Option<String>,
    pub created: String,
    pub updated: String,
}

/// A team and its members.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRow {
    pub id: i64,
    pub name: String,
    pub members: Vec<String>,
}

/// Where a submission stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// A code submission waiting for its run.
    Queued,
    /// A code submission whose notebook runs now, until its deadline.
    Running,
    /// Checked and scored.
    Scored,
    /// The file was refused by the checks.
    Rejected,
    /// No score: the platform's failure, or a code submission's own.
    Failed,
}

impl EntryState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            EntryState::Queued => "queued",
            EntryState::Running => "running",
            EntryState::Scored => "scored",
            EntryState::Rejected => "rejected",
            EntryState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> EntryState {
        match s {
            "queued" => EntryState::Queued,
            "running" => EntryState::Running,
            "scored" => EntryState::Scored,
            "rejected" => EntryState::Rejected,
            _ => EntryState::Failed,
        }
    }

    /// As the API names it.
    pub fn as_api(self) -> &'static str {
        self.as_str()
    }

    /// Whether it has reached its end.
    pub fn is_final(self) -> bool {
        !matches!(self, EntryState::Queued | EntryState::Running)
    }
}

/// What was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A prediction file, scored at once.
    Csv,
    /// A notebook, run offline on the hidden test features, then scored.
    Code,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Csv => "csv",
            EntryKind::Code => "code",
        }
    }

    fn parse(s: &str) -> EntryKind {
        if s == "code" {
            EntryKind::Code
        } else {
            EntryKind::Csv
        }
    }
}

/// One submission to a competition.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRow {
    pub id: i64,
    pub competition: String,
    pub team: i64,
    pub user_name: String,
    pub description: String,
    pub kind: EntryKind,
    /// The file as received, under the competition's `submissions/`.
    pub file: String,
    /// A notebook's folder in its submitter's: where its kernel starts.
    pub folder: String,
    pub sha256: String,
    pub submitted: String,
    pub day: String,
    pub state: EntryState,
    pub public_score: Option<f64>,
    pub private_score: Option<f64>,
    pub error: Option<String>,
    pub selected: bool,
    /// Whether it counts against the caps: a scored one, a queued or
    /// running notebook, and one that failed through its own code; never a
    /// refused file or the platform's failure.
    pub counted: bool,
    /// A code submission's runs so far (a platform failure runs it again).
    pub attempts: i64,
    /// When a running code submission's run must have ended.
    pub deadline: Option<String>,
    /// A finished run's time as shown, in whole minutes.
    pub runtime_min: Option<i64>,
}

pub(super) const ENTRY_COLUMNS: &str = "id, competition, team, user_name, description, file, sha256, submitted, day, state, \
     public_score, private_score, error, selected, kind, folder, counted, attempts, deadline, runtime_min";

pub(super) fn entry_row(r: &Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        id: r.get(0)?,
        competition: r.get(1)?,
        team: r.get(2)?,
        user_name: r.get(3)?,
        description: r.get(4)?,
        file: r.get(5)?,
        sha256: r.get(6)?,
        submitted: r.get(7)?,
        day: r.get(8)?,
        state: EntryState::parse(&r.get::<_, String>(9)?),
        public_score: r.get(10)?,
        private_score: r.get(11)?,
        error: r.get(12)?,
        selected: r.get::<_, i64>(13)? != 0,
        kind: EntryKind::parse(&r.get::<_, String>(14)?),
        folder: r.get(15)?,
        counted: r.get::<_, i64>(16)? != 0,
        attempts: r.get(17)?,
        deadline: r.get(18)?,
        runtime_min: r.get(19)?,
    })
}

const COMPETITION_COLUMNS: &str = "slug, title, overview, rules_text, rules, created_by, solution, published, revealed, created, updated";

fn competition_row(r: &Row<'_>) -> rusqlite::Result<CompetitionRow> {
    Ok(CompetitionRow {
        slug: r.get(0)?,
        title: r.get(1)?,
        overview: r.get(2)?,
        rules_text: r.get(3)?,
        rules: r.get(4)?,
        created_by: r.get(5)?,
        solution: r.get(6)?,
        published: r.get(7)?,
        revealed: r.get(8)?,
        created: r.get(9)?,
        updated: r.get(10)?,
    })
}

/// A selection the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("no scored submission {0} of your team")]
    NotYours(i64),
    #[error("your team has already selected {0} final submissions; unselect one first")]
    TooMany(u32),
}

impl Store {
    /// Records a new competition; `false` if the slug is taken.
    pub fn create_competition(&self, row: &CompetitionRow) -> Result<bool, StoreError> {
        self.with(|c| {
            let added = c.execute(
                "INSERT OR IGNORE INTO competitions (slug, title, overview, rules_text, rules, created_by, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![row.slug, row.title, row.overview, row.rules_text, row.rules, row.created_by, now()],
            )?;
            Ok(added == 1)
        })
    }

    pub fn competition(&self, slug: &str) -> Result<Option<CompetitionRow>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {COMPETITION_COLUMNS} FROM competitions WHERE slug = ?1"),
                params![slug],
                competition_row,
            )
            .optional()?)
        })
    }

    pub fn competitions(&self) -> Result<Vec<CompetitionRow>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare(&format!(
                    "SELECT {COMPETITION_COLUMNS} FROM competitions ORDER BY created, slug"
                ))?
                .query_map([], competition_row)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// Sets what staff edit: title, texts and rules.
    pub fn update_competition(&self, row: &CompetitionRow) -> Result<(), StoreError> {
        let done = self.with(|c| {
            c.execute(
                "UPDATE competitions SET title = ?2, overview = ?3, rules_text = ?4, rules = ?5, updated = ?6 WHERE slug = ?1",
                params![row.slug, row.title, row.overview, row.rules_text, row.rules, now()],
            )?;
            Ok(())
        });
        self.boards_changed();
        done
    }

    pub fn set_competition_solution(&self, slug: &str, sha256: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE competitions SET solution = ?2, updated = ?3 WHERE slug = ?1",
                params![slug, sha256, now()],
            )?;
            Ok(())
        })
    }

    /// Publishes (participants see it) or reveals (the private board shows).
    pub fn mark_competition(&self, slug: &str, what: CompetitionMark) -> Result<(), StoreError> {
        let column = match what {
            CompetitionMark::Published => "published",
            CompetitionMark::Revealed => "revealed",
        };
        let done = self.with(|c| {
            c.execute(
                &format!("UPDATE competitions SET {column} = COALESCE({column}, ?2), updated = ?2 WHERE slug = ?1"),
                params![slug, now()],
            )?;
            Ok(())
        });
        self.boards_changed();
        done
    }

    /// The published competitions `user` has joined.
    pub fn joined_competitions(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare(
                    "SELECT m.competition FROM competition_members m
                     JOIN competitions c ON c.slug = m.competition
                     WHERE m.user_name = ?1 AND c.published IS NOT NULL ORDER BY m.competition",
                )?
                .query_map(params![user], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// The caller's team, joining the competition with a team of their own
    /// (named after them) if they have none.
    pub fn join_competition(&self, slug: &str, user: &str) -> Result<TeamRow, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let team: Option<i64> = tx
                .query_row(
                    "SELECT team FROM competition_members WHERE competition = ?1 AND user_name = ?2",
                    params![slug, user],
                    |r| r.get(0),
                )
                .optional()?;
            if team.is_none() {
                let name = free_team_name(&tx, slug, user)?;
                let at = now();
                tx.execute(
                    "INSERT INTO competition_teams (competition, name, created) VALUES (?1, ?2, ?3)",
                    params![slug, name, at],
                )?;
                let id = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO competition_members (competition, user_name, team, joined) VALUES (?1, ?2, ?3, ?4)",
                    params![slug, user, id, at],
                )?;
            }
            tx.commit()?;
            Ok(())
        })?;
        self.boards_changed();
        self.team_of(slug, user)?
            .ok_or_else(|| StoreError::NoUser(user.to_string()))
    }

    /// The team `user` is on, if they joined.
    pub fn team_of(&self, slug: &str, user: &str) -> Result<Option<TeamRow>, StoreError> {
        self.with(|c| {
            let Some((id, name)) = c
                .query_row(
                    "SELECT t.id, t.name FROM competition_members m JOIN competition_teams t ON t.id = m.team
                     WHERE m.competition = ?1 AND m.user_name = ?2",
                    params![slug, user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let members = c
                .prepare("SELECT user_name FROM competition_members WHERE team = ?1 ORDER BY joined, user_name")?
                .query_map(params![id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(Some(TeamRow { id, name, members }))
        })
    }

    /// Every team's name, by id.
    pub fn team_names(
        &self,
        slug: &str,
    ) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare("SELECT id, name FROM competition_teams WHERE competition = ?1")?
                .query_map(params![slug], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// A team's counts for `day` (see [`EntryCounts`]).
    pub fn entry_counts(
        &self,
        slug: &str,
        team: i64,
        day: &str,
    ) -> Result<EntryCounts, StoreError> {
        self.with(|c| counts(c, slug, team, day))
    }

    /// Records a submission (a finished CSV, a queued notebook) for the team its submitter is on *now*
    /// (a merge may have moved them since `row.team` was read), only if
    /// `allow`, given that team's counts for `row.day` and in all, lets it:
    /// in the same transaction as the insert, so concurrent submissions
    /// cannot pass a cap together. Returns the id and the team.
    pub fn add_entry_if<E>(
        &self,
        row: &EntryRow,
        allow: impl FnOnce(EntryCounts) -> Result<(), E>,
    ) -> Result<Result<(i64, i64), E>, StoreError> {
        let done = self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let team: i64 = tx
                .query_row(
                    "SELECT team FROM competition_members WHERE competition = ?1 AND user_name = ?2",
                    params![row.competition, row.user_name],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(row.team);
            if let Err(refused) = allow(counts(&tx, &row.competition, team, &row.day)?) {
                return Ok(Err(refused));
            }
            tx.execute(
                "INSERT INTO competition_submissions (competition, team, user_name, description, file, sha256,
                     submitted, day, state, counted, public_score, private_score, error, selected, kind, folder)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?14, ?15)",
                params![
                    row.competition,
                    team,
                    row.user_name,
                    row.description,
                    row.file,
                    row.sha256,
                    row.submitted,
                    row.day,
                    row.state.as_str(),
                    row.counted,
                    row.public_score,
                    row.private_score,
                    row.error,
                    row.kind.as_str(),
                    row.folder,
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Ok((id, team)))
        });
        self.boards_changed();
        done
    }

    /// A competition's submissions, newest first: a team's, or all.
    pub fn entries(&self, slug: &str, team: Option<i64>) -> Result<Vec<EntryRow>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM competition_submissions
                     WHERE competition = ?1 AND (?2 IS NULL OR team = ?2) ORDER BY id DESC"
                ))?
                .query_map(params![slug, team], entry_row)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// Every scored submission, for the boards.
    pub fn scored_entries(&self, slug: &str) -> Result<Vec<EntryRow>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM competition_submissions
                     WHERE competition = ?1 AND state = 'scored' ORDER BY id"
                ))?
                .query_map(params![slug], entry_row)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// Selects or unselects one of `team`'s scored submissions as final,
    /// keeping at most `max` selected, in one transaction.
    pub fn select_entry(
        &self,
        slug: &str,
        team: i64,
        id: i64,
        selected: bool,
        max: u32,
    ) -> Result<Result<(), SelectError>, StoreError> {
        let done = self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let found: Option<bool> = tx
                .query_row(
                    "SELECT selected FROM competition_submissions
                     WHERE id = ?1 AND competition = ?2 AND team = ?3 AND state = 'scored'",
                    params![id, slug, team],
                    |r| Ok(r.get::<_, i64>(0)? != 0),
                )
                .optional()?;
            let Some(already) = found else {
                return Ok(Err(SelectError::NotYours(id)));
            };
            if selected && !already {
                let count: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM competition_submissions WHERE competition = ?1 AND team = ?2 AND selected = 1",
                    params![slug, team],
                    |r| r.get(0),
                )?;
                if count >= i64::from(max) {
                    return Ok(Err(SelectError::TooMany(max)));
                }
            }
            tx.execute(
                "UPDATE competition_submissions SET selected = ?2 WHERE id = ?1",
                params![id, selected],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        });
        self.boards_changed();
        done
    }
}

/// `user` as a team name, with a suffix when another team has it.
pub(super) fn free_team_name(
    c: &rusqlite::Connection,
    slug: &str,
    user: &str,
) -> Result<String, StoreError> {
    let mut name = user.to_string();
    let mut n = 1;
    while c
        .query_row(
            "SELECT 1 FROM competition_teams WHERE competition = ?1 AND name = ?2",
            params![slug, name],
            |_| Ok(()),
        )
        .optional()?
        .is_some()
    {
        n += 1;
        name = format!("{user}-{n}");
    }
    Ok(name)
}

fn counts(
    c: &rusqlite::Connection,
    slug: &str,
    team: i64,
    day: &str,
) -> Result<EntryCounts, StoreError> {
    let (today, total, free_today): (i64, i64, i64) = c.query_row(
        "SELECT COALESCE(SUM(counted = 1 AND day = ?3), 0), COALESCE(SUM(counted = 1), 0),
                COALESCE(SUM(counted = 0 AND day = ?3), 0)
         FROM competition_submissions WHERE competition = ?1 AND team = ?2",
        params![slug, team, day],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(EntryCounts {
        today: count(today),
        total: count(total),
        free_today: count(free_today),
    })
}

/// A team's submissions, as the caps count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryCounts {
    /// Counted submissions on the row's UTC day (scored, queued or running
    /// notebooks, and notebooks that failed by their own fault).
    pub today: u32,
    /// Counted submissions in all.
    pub total: u32,
    /// Refused or failed ones on the row's UTC day (they cost no quota, but
    /// are limited so nobody can fill the disk with them).
    pub free_today: u32,
}

/// What [`Store::mark_competition`] sets, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompetitionMark {
    Published,
    Revealed,
}
