//! Competition teams in SQLite: invitations (one team asking to merge
//! another into it) and the merge itself, which moves the other team's
//! members and submissions in one transaction, after the rules said yes
//! to the counts read inside it.

use rusqlite::{OptionalExtension as _, params};

use super::competitions::free_team_name;
use super::{Store, StoreError, now};

/// A pending invitation, with both teams' names.
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationRow {
    pub id: i64,
    pub from_team: i64,
    pub from_name: String,
    pub to_team: i64,
    pub to_name: String,
    pub by_user: String,
    pub created: String,
}

/// What a merge needs the rules to judge: both teams' sizes and their
/// counted submissions together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeCounts {
    pub sizes: (u32, u32),
    pub made: u32,
}

/// Why a member may not leave their team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaveRefused {
    #[error("you are your team's only member; there is nothing to leave")]
    Alone,
    #[error("a team that has submitted cannot be left")]
    Submitted,
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Store {
    /// Records that `from` asks `to` to merge into it; `false` if it already did.
    pub fn invite_team(
        &self,
        slug: &str,
        from: i64,
        to: i64,
        by: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let added = c.execute(
                "INSERT OR IGNORE INTO competition_invitations (competition, from_team, to_team, by_user, created)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![slug, from, to, by, now()],
            )?;
            Ok(added == 1)
        })
    }

    /// The invitations `team` sent or got.
    pub fn invitations(&self, slug: &str, team: i64) -> Result<Vec<InvitationRow>, StoreError> {
        self.with(|c| {
            let rows = c
                .prepare(
                    "SELECT i.id, i.from_team, f.name, i.to_team, t.name, i.by_user, i.created
                     FROM competition_invitations i
                     JOIN competition_teams f ON f.id = i.from_team
                     JOIN competition_teams t ON t.id = i.to_team
                     WHERE i.competition = ?1 AND (i.from_team = ?2 OR i.to_team = ?2) ORDER BY i.id",
                )?
                .query_map(params![slug, team], |r| {
                    Ok(InvitationRow {
                        id: r.get(0)?,
                        from_team: r.get(1)?,
                        from_name: r.get(2)?,
                        to_team: r.get(3)?,
                        to_name: r.get(4)?,
                        by_user: r.get(5)?,
                        created: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// Withdraws or declines an invitation `team` sent or got; `false` if none.
    pub fn drop_invitation(&self, slug: &str, id: i64, team: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "DELETE FROM competition_invitations WHERE id = ?1 AND competition = ?2 AND (from_team = ?3 OR to_team = ?3)",
                params![id, slug, team],
            )?;
            Ok(n == 1)
        })
    }

    /// Accepts invitation `id` addressed to `team`: if `allow` passes the
    /// counts, `team`'s members and submissions move to the inviting team
    /// and `team` is gone (its other invitations with it). `Ok(None)` when
    /// there is no such invitation for `team`.
    pub fn merge_teams<E>(
        &self,
        slug: &str,
        id: i64,
        team: i64,
        allow: impl FnOnce(MergeCounts) -> Result<(), E>,
    ) -> Result<Option<Result<i64, E>>, StoreError> {
        let done = self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let Some(into) = tx
                .query_row(
                    "SELECT from_team FROM competition_invitations WHERE id = ?1 AND competition = ?2 AND to_team = ?3",
                    params![id, slug, team],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let size = |t: i64| -> Result<i64, rusqlite::Error> {
                tx.query_row("SELECT COUNT(*) FROM competition_members WHERE team = ?1", params![t], |r| r.get(0))
            };
            let made: i64 = tx.query_row(
                "SELECT COUNT(*) FROM competition_submissions WHERE team IN (?1, ?2) AND counted = 1",
                params![into, team],
                |r| r.get(0),
            )?;
            let counts = MergeCounts { sizes: (count(size(into)?), count(size(team)?)), made: count(made) };
            if let Err(refused) = allow(counts) {
                return Ok(Some(Err(refused)));
            }
            tx.execute("UPDATE competition_members SET team = ?1 WHERE team = ?2", params![into, team])?;
            // Finals stay at most what the rules allow: the merged team picks again.
            tx.execute(
                "UPDATE competition_submissions SET team = ?1, selected = 0 WHERE team = ?2",
                params![into, team],
            )?;
            tx.execute("UPDATE competition_submissions SET selected = 0 WHERE team = ?1", params![into])?;
            tx.execute("DELETE FROM competition_teams WHERE id = ?1", params![team])?;
            tx.commit()?;
            Ok(Some(Ok(into)))
        });
        self.boards_changed();
        done
    }

    /// Renames `team`; `false` if another team of the competition has the name.
    pub fn rename_team(&self, slug: &str, team: i64, name: &str) -> Result<bool, StoreError> {
        let done = self.with(|c| {
            let n = c.execute(
                "UPDATE OR IGNORE competition_teams SET name = ?3 WHERE id = ?2 AND competition = ?1",
                params![slug, team, name],
            )?;
            Ok(n == 1)
        });
        self.boards_changed();
        done
    }

    /// Moves `user` out of `team` into a new team of their own (named
    /// after them). The submissions stay with the team they were made for.
    /// Refused, with nothing written, when they are its only member or not
    /// on it, or when the team has a counted submission (asked in the same
    /// transaction as the move).
    pub fn leave_team(
        &self,
        slug: &str,
        team: i64,
        user: &str,
    ) -> Result<Result<i64, LeaveRefused>, StoreError> {
        let done = self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let size: i64 = tx.query_row(
                "SELECT COUNT(*) FROM competition_members WHERE team = ?1 AND competition = ?2",
                params![team, slug],
                |r| r.get(0),
            )?;
            let member = tx
                .query_row(
                    "SELECT 1 FROM competition_members WHERE team = ?1 AND user_name = ?2",
                    params![team, user],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if size < 2 || !member {
                return Ok(Err(LeaveRefused::Alone));
            }
            let made: i64 = tx.query_row(
                "SELECT COUNT(*) FROM competition_submissions WHERE team = ?1 AND counted = 1",
                params![team],
                |r| r.get(0),
            )?;
            if made > 0 {
                return Ok(Err(LeaveRefused::Submitted));
            }
            let name = free_team_name(&tx, slug, user)?;
            tx.execute(
                "INSERT INTO competition_teams (competition, name, created) VALUES (?1, ?2, ?3)",
                params![slug, name, now()],
            )?;
            let own = tx.last_insert_rowid();
            tx.execute(
                "UPDATE competition_members SET team = ?1 WHERE team = ?2 AND user_name = ?3",
                params![own, team, user],
            )?;
            tx.commit()?;
            Ok(Ok(own))
        });
        self.boards_changed();
        done
    }
}
