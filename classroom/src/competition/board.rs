//! Leaderboards: one row per team, ranked by the metric's direction, ties
//! going to the earlier submission (then the lower submission id, so the
//! order is total and the same on every read).
//!
//! The public board takes each team's best public score. The private board
//! takes, for each team, the best private score among its final selections,
//! or, when it selected none, among its best `selections` by public score
//! (Kaggle's rule). The shake-up sets the two side by side.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A scored submission that counts for the boards.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub team: i64,
    pub submission: i64,
    pub at: DateTime<Utc>,
    pub public: f64,
    pub private: f64,
    /// Picked by the team as a final submission.
    pub selected: bool,
}

/// One team's row on a board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    /// 1 for the first.
    pub rank: u32,
    pub team: i64,
    /// The submission whose score this is.
    pub submission: i64,
    pub score: f64,
    pub at: DateTime<Utc>,
    /// The team's counted submissions.
    pub entries: u32,
}

/// A team's move between the boards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    pub team: i64,
    pub public_rank: Option<u32>,
    pub private_rank: u32,
    /// Places gained (positive) or lost from public to private.
    pub change: Option<i64>,
}

/// Orders two (score, at, submission) triples, better first.
fn better(higher: bool, a: (f64, DateTime<Utc>, i64), b: (f64, DateTime<Utc>, i64)) -> Ordering {
    let by_score = if higher {
        b.0.total_cmp(&a.0)
    } else {
        a.0.total_cmp(&b.0)
    };
    by_score.then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
}

fn by_team(scored: &[Scored]) -> HashMap<i64, Vec<&Scored>> {
    let mut teams: HashMap<i64, Vec<&Scored>> = HashMap::new();
    for s in scored {
        teams.entry(s.team).or_default().push(s);
    }
    teams
}

fn ranked(higher: bool, mut rows: Vec<Standing>) -> Vec<Standing> {
    rows.sort_by(|a, b| {
        better(
            higher,
            (a.score, a.at, a.submission),
            (b.score, b.at, b.submission),
        )
    });
    for (i, row) in rows.iter_mut().enumerate() {
        row.rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    rows
}

/// Each team's best public score, ranked.
pub fn public_board(scored: &[Scored], higher: bool) -> Vec<Standing> {
    let rows = by_team(scored)
        .into_values()
        .filter_map(|subs| {
            let entries = u32::try_from(subs.len()).unwrap_or(u32::MAX);
            subs.into_iter()
                .min_by(|a, b| {
                    better(
                        higher,
                        (a.public, a.at, a.submission),
                        (b.public, b.at, b.submission),
                    )
                })
                .map(|best| Standing {
                    rank: 0,
                    team: best.team,
                    submission: best.submission,
                    score: best.public,
                    at: best.at,
                    entries,
                })
        })
        .collect();
    ranked(higher, rows)
}

/// The submissions that count for a team's private score: its selections,
/// at most `selections` of them (the earliest picked if it somehow has
/// more), or else its best `selections` by public score.
pub fn finals(subs: &[&Scored], higher: bool, selections: usize) -> Vec<i64> {
    let mut picked: Vec<&Scored> = subs.iter().copied().filter(|s| s.selected).collect();
    if picked.is_empty() {
        picked = subs.to_vec();
        picked.sort_by(|a, b| {
            better(
                higher,
                (a.public, a.at, a.submission),
                (b.public, b.at, b.submission),
            )
        });
    } else {
        picked.sort_by_key(|s| (s.at, s.submission));
    }
    picked
        .into_iter()
        .take(selections)
        .map(|s| s.submission)
        .collect()
}

/// Each team's best private score among its [`finals`], ranked.
pub fn private_board(scored: &[Scored], higher: bool, selections: usize) -> Vec<Standing> {
    let rows = by_team(scored)
        .into_values()
        .filter_map(|subs| {
            let entries = u32::try_from(subs.len()).unwrap_or(u32::MAX);
            let finals = finals(&subs, higher, selections);
            subs.into_iter()
                .filter(|s| finals.contains(&s.submission))
                .min_by(|a, b| {
                    better(
                        higher,
                        (a.private, a.at, a.submission),
                        (b.private, b.at, b.submission),
                    )
                })
                .map(|best| Standing {
                    rank: 0,
                    team: best.team,
                    submission: best.submission,
                    score: best.private,
                    at: best.at,
                    entries,
                })
        })
        .collect();
    ranked(higher, rows)
}

/// Every team on the private board with its public rank and the change.
pub fn shake_up(public: &[Standing], private: &[Standing]) -> Vec<Move> {
    let public_rank: HashMap<i64, u32> = public.iter().map(|s| (s.team, s.rank)).collect();
    private
        .iter()
        .map(|s| {
            let before = public_rank.get(&s.team).copied();
            Move {
                team: s.team,
                public_rank: before,
                private_rank: s.rank,
                change: before.map(|b| i64::from(b) - i64::from(s.rank)),
            }
        })
        .collect()
}

/// A score as the boards show it: `decimals` places, fixed.
pub fn shown(score: f64, decimals: u32) -> String {
    format!("{score:.*}", decimals as usize)
}
