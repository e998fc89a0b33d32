//! A term's sessions, generated from a workload with a seeded RNG: classes
//! on their days and hours, homework at random times, competition weeks.
//! Same seed, same term.

use rand::{Rng, SeedableRng};

use super::workload::{Workload, cohort_name};
use crate::admission::Millis;

pub(super) const MINUTE: Millis = 60_000;
pub(super) const HOUR: Millis = 60 * MINUTE;
pub(super) const DAY: Millis = 24 * HOUR;
pub(super) const WEEK: Millis = 7 * DAY;
/// The term starts on a Monday, 00:00 UTC (2027-01-04), so budget weeks line up.
pub(super) const TERM_START: Millis = 1_799_020_800_000;

/// One kernel a user will start.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub at: Millis,
    pub user: u32,
    pub group: u32,
    pub gpus: u32,
    pub model: Option<u16>,
    pub length: Millis,
}

/// The term's sessions, sorted by start; plus group and model names.
pub struct Term {
    pub sessions: Vec<Session>,
    pub groups: Vec<String>,
    pub models: Vec<String>,
}

/// Draws the sessions of a term.
pub fn generate(w: &Workload) -> Term {
    let mut rng = rand::rngs::StdRng::seed_from_u64(w.seed);
    let mut sessions = Vec::new();
    let mut groups = Vec::new();
    let mut models: Vec<String> = Vec::new();
    let mut next_user = 0u32;
    let mut cohort_index = 0u64;
    for c in &w.cohorts {
        let model = c.model.as_ref().map(|m| {
            if let Some(i) = models.iter().position(|x| x == m) {
                i as u16
            } else {
                models.push(m.clone());
                (models.len() - 1) as u16
            }
        });
        let span = |rng: &mut rand::rngs::StdRng, range: [f64; 2]| -> Millis {
            (rng.random_range(range[0]..=range[1]) * MINUTE as f64) as Millis
        };
        for i in 0..c.count {
            let group = groups.len() as u32;
            groups.push(cohort_name(c, i));
            let first_user = next_user;
            next_user += c.size;
            for week in 0..w.weeks {
                let week_start = TERM_START + u64::from(week) * WEEK;
                // Classes: staggered over weekdays and mornings/afternoons.
                for k in 0..c.classes_per_week {
                    let day = (cohort_index + 2 * u64::from(k)) % 5;
                    let hour = if (cohort_index / 5).is_multiple_of(2) {
                        9
                    } else {
                        13
                    };
                    let start = week_start + day * DAY + hour * HOUR;
                    let end = start + (c.class_hours * HOUR as f64) as Millis;
                    for u in 0..c.size {
                        if rng.random::<f64>() >= c.attendance {
                            continue;
                        }
                        let at = start + rng.random_range(0..15 * MINUTE);
                        let leave = end
                            .saturating_sub(rng.random_range(0..30 * MINUTE))
                            .max(at + MINUTE);
                        sessions.push(Session {
                            at,
                            user: first_user + u,
                            group,
                            gpus: c.gpus_per_kernel,
                            model,
                            length: leave - at,
                        });
                    }
                }
                let competing = w.competition_weeks.contains(&(week + 1));
                for u in 0..c.size {
                    let mut extra = c.self_study_per_week;
                    if competing {
                        extra += c.competition_sessions_per_week;
                    }
                    let n = extra.floor() as u32 + u32::from(rng.random::<f64>() < extra.fract());
                    for _ in 0..n {
                        let day = rng.random_range(0..7);
                        let at = week_start + day * DAY + 8 * HOUR + rng.random_range(0..14 * HOUR);
                        let length = if competing {
                            span(&mut rng, [60.0, 240.0])
                        } else {
                            span(&mut rng, c.session_minutes)
                        };
                        sessions.push(Session {
                            at,
                            user: first_user + u,
                            group,
                            gpus: c.gpus_per_kernel,
                            model,
                            length,
                        });
                    }
                }
            }
            cohort_index += 1;
        }
    }
    sessions.sort_by_key(|s| s.at);
    Term {
        sessions,
        groups,
        models,
    }
}
