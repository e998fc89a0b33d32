//! The capacity simulator: replays an academy term through the very
//! [`Scheduler`] the gateway uses, with a virtual clock, so ops can size
//! quotas and the cluster before the term starts.
//!
//! A [`Workload`] describes cohorts (size, class hours, self-study,
//! competition weeks, quotas); [`generate`] turns it into kernel sessions
//! with a seeded random generator; [`run`] feeds them to admission as
//! arrivals, ends, and impatient users cancelling a queued start, and
//! measures waits, refusals and GPU utilisation.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::admission::{Decision, Event, Millis, Request, Scheduler, Tuning};
use crate::inventory::Cluster;
use crate::quota::{Amount, GroupQuota, QuotaConfig, UserLimits};

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
const WEEK: Millis = 7 * DAY;
/// The term starts on a Monday, 00:00 UTC (2027-01-04), so budget weeks line up.
const TERM_START: Millis = 1_799_020_800_000;

/// A term: cohorts and the weeks with competitions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "ten")]
    pub weeks: u32,
    #[serde(default)]
    pub seed: u64,
    /// A user waiting longer than this for a GPU gives up.
    #[serde(default = "thirty")]
    pub patience_minutes: f64,
    /// Weeks (1-based) in which every user also competes.
    #[serde(default)]
    pub competition_weeks: Vec<u32>,
    #[serde(rename = "cohort")]
    pub cohorts: Vec<CohortSpec>,
}

/// `count` cohorts of `size` engineers each, alike.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CohortSpec {
    pub name: String,
    #[serde(default = "one_u32")]
    pub count: u32,
    pub size: u32,
    #[serde(default = "one_f64")]
    pub weight: f64,
    /// Per cohort.
    #[serde(default)]
    pub guaranteed: BTreeMap<String, u32>,
    #[serde(default)]
    pub borrow_limit: BTreeMap<String, Amount>,
    /// The GPU model its kernels ask for (`None`: any).
    pub model: Option<String>,
    #[serde(default = "one_u32")]
    pub gpus_per_kernel: u32,
    #[serde(default = "two")]
    pub classes_per_week: u32,
    #[serde(default = "three")]
    pub class_hours: f64,
    /// The share of the cohort that starts a kernel in class.
    #[serde(default = "attendance")]
    pub attendance: f64,
    #[serde(default = "two_f64")]
    pub self_study_per_week: f64,
    /// Self-study session length range, minutes.
    #[serde(default = "session")]
    pub session_minutes: [f64; 2],
    #[serde(default = "six")]
    pub competition_sessions_per_week: f64,
    #[serde(default)]
    pub user_limits: UserLimits,
}

fn ten() -> u32 {
    10
}
fn thirty() -> f64 {
    30.0
}
fn one_u32() -> u32 {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn two() -> u32 {
    2
}
fn two_f64() -> f64 {
    2.0
}
fn three() -> f64 {
    3.0
}
fn six() -> f64 {
    6.0
}
fn attendance() -> f64 {
    0.9
}
fn session() -> [f64; 2] {
    [30.0, 120.0]
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read the workload: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid workload: {0}")]
    Invalid(String),
}

impl Workload {
    pub fn from_toml(text: &str) -> Result<Self, WorkloadError> {
        let w: Workload = toml::from_str(text)?;
        if w.cohorts.is_empty() {
            return Err(WorkloadError::Invalid("no [[cohort]]".into()));
        }
        if w.weeks == 0 || w.weeks > 104 {
            return Err(WorkloadError::Invalid("weeks must be 1 to 104".into()));
        }
        for c in &w.cohorts {
            let bad =
                |what: &str| Err(WorkloadError::Invalid(format!("cohort {}: {what}", c.name)));
            if !(0.0..=1.0).contains(&c.attendance) {
                return bad("attendance must be between 0 and 1");
            }
            if !(c.session_minutes[0] > 0.0 && c.session_minutes[1] >= c.session_minutes[0]) {
                return bad("session_minutes must be [min, max] with 0 < min <= max");
            }
            if !(c.class_hours > 0.0 && c.class_hours <= 12.0) {
                return bad("class_hours must be between 0 and 12");
            }
            if u64::from(c.size) * u64::from(c.count) > 1_000_000 {
                return bad("more than a million users");
            }
        }
        Ok(w)
    }

    /// The quotas the workload declares, one group per cohort.
    pub fn quotas(&self) -> QuotaConfig {
        let mut q = QuotaConfig::default();
        for c in &self.cohorts {
            for i in 0..c.count {
                let mut g = GroupQuota::new(cohort_name(c, i));
                g.weight = c.weight;
                g.guaranteed = c.guaranteed.clone();
                g.borrow_limit = c.borrow_limit.clone();
                g.user_limits = c.user_limits.clone();
                q.groups.push(g);
            }
        }
        q
    }

    pub fn users(&self) -> u64 {
        self.cohorts
            .iter()
            .map(|c| u64::from(c.size) * u64::from(c.count))
            .sum()
    }
}

fn cohort_name(c: &CohortSpec, i: u32) -> String {
    if c.count == 1 {
        c.name.clone()
    } else {
        format!("{}-{i}", c.name)
    }
}

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

/// What a term looked like.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub users: u64,
    pub sessions: usize,
    pub admitted: usize,
    /// Seconds from asking to getting a GPU, over every GPU session that
    /// was not refused: admitted ones until admitted, and those given up on
    /// until they gave up (so the tail is never capped at the patience).
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_p99_s: f64,
    pub wait_max_s: f64,
    /// Share of the GPUs' time that kernels held them.
    pub gpu_utilisation: f64,
    pub peak_queue: usize,
    /// Group → limit → refused starts.
    pub refused: BTreeMap<String, BTreeMap<String, u64>>,
    /// Group → starts given up after waiting `patience_minutes`.
    pub abandoned: BTreeMap<String, u64>,
    /// Hourly samples: GPUs in use and queued starts.
    pub hourly: Vec<(u32, u32)>,
    pub capacity: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    End(u32),
    GiveUp(u32),
    Arrive(u32),
}

fn kernel_id(i: u32) -> uuid::Uuid {
    uuid::Uuid::from_u128(u128::from(i) + 1)
}

fn session_index(k: uuid::Uuid) -> u32 {
    (k.as_u128() - 1) as u32
}

/// The moving parts of a replay that admissions and admission's events change.
struct Replay<'a> {
    term: &'a Term,
    heap: BinaryHeap<Reverse<(Millis, Ev)>>,
    /// Session → when it started waiting.
    waiting: HashMap<u32, Millis>,
    waits: Vec<Millis>,
    in_use: u64,
    admitted: usize,
}

impl Replay<'_> {
    /// Session `i` got its GPUs at `now`; it ends after its length.
    fn admit(&mut self, i: u32, grant: &crate::admission::Grant, now: Millis) {
        let since = self.waiting.remove(&i).unwrap_or(now);
        self.waits.push(now - since);
        self.admitted += 1;
        self.in_use += grant.devices.len() as u64;
        let end = now + self.term.sessions[i as usize].length;
        self.heap.push(Reverse((end, Ev::End(i))));
    }

    fn apply(&mut self, events: Vec<Event>, now: Millis) {
        for e in events {
            match e {
                Event::Admitted { kernel, grant } => self.admit(session_index(kernel), &grant, now),
                // A reclaimed kernel ends at its deadline.
                Event::Reclaim {
                    kernel, deadline, ..
                } => self
                    .heap
                    .push(Reverse((deadline, Ev::End(session_index(kernel))))),
                Event::Refused { kernel, .. } => {
                    self.waiting.remove(&session_index(kernel));
                }
            }
        }
    }
}

/// Replays `term` on `cluster` with `quotas` through admission.
pub fn run(
    cluster: Cluster,
    quotas: QuotaConfig,
    term: &Term,
    patience: Millis,
    tuning: Tuning,
) -> Report {
    let capacity = cluster.gpus() as u32;
    let mut sched = Scheduler::new(cluster, quotas, tuning);
    let users: Vec<String> = {
        let max = term
            .sessions
            .iter()
            .map(|s| s.user)
            .max()
            .map_or(0, |m| m + 1);
        (0..max).map(|u| format!("u{u}")).collect()
    };
    let mut r = Replay {
        term,
        heap: BinaryHeap::new(),
        waiting: HashMap::new(),
        waits: Vec::new(),
        in_use: 0,
        admitted: 0,
    };
    for (i, s) in term.sessions.iter().enumerate() {
        r.heap.push(Reverse((s.at, Ev::Arrive(i as u32))));
    }
    let mut refused: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut abandoned: BTreeMap<String, u64> = BTreeMap::new();
    let mut busy: u128 = 0;
    let mut last = TERM_START;
    let mut peak_queue = 0;
    let mut hourly = Vec::new();
    let mut next_sample = TERM_START;
    let end_of_term = term.sessions.last().map_or(TERM_START, |s| s.at);
    let mut ended = std::collections::HashSet::new();
    while let Some(Reverse((now, ev))) = r.heap.pop() {
        busy += u128::from(r.in_use) * u128::from(now.saturating_sub(last));
        last = now;
        while next_sample <= now && next_sample <= end_of_term {
            hourly.push((r.in_use as u32, r.waiting.len() as u32));
            next_sample += HOUR;
        }
        let events = match ev {
            Ev::Arrive(i) => {
                let s = term.sessions[i as usize];
                let req = Request {
                    kernel: kernel_id(i),
                    user: users[s.user as usize].clone(),
                    group: Some(term.groups[s.group as usize].clone()),
                    gpus: s.gpus,
                    model: s.model.map(|m| term.models[m as usize].clone()),
                    role_max_gpus: Amount::Unlimited,
                };
                let (decision, events) = sched.decide(req, now);
                match decision {
                    Some(Decision::Admitted(grant)) => r.admit(i, &grant, now),
                    Some(Decision::Refused(refusal)) => {
                        let limit = serde_json::to_value(refusal.limit)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        *refused
                            .entry(term.groups[s.group as usize].clone())
                            .or_default()
                            .entry(limit)
                            .or_default() += 1;
                    }
                    Some(Decision::Queued(_)) | None => {
                        r.waiting.insert(i, now);
                        peak_queue = peak_queue.max(r.waiting.len());
                        r.heap.push(Reverse((now + patience, Ev::GiveUp(i))));
                    }
                }
                events
            }
            Ev::End(i) => {
                if !ended.insert(i) {
                    continue;
                }
                let gpus = sched
                    .grant_of(kernel_id(i))
                    .map_or(0, |g| g.devices.len() as u64);
                r.in_use -= gpus;
                sched.release(kernel_id(i), now)
            }
            Ev::GiveUp(i) => {
                let Some(since) = r.waiting.remove(&i) else {
                    continue;
                };
                // A start given up on waited too: leaving it out would cap
                // the percentiles at the patience and hide the worst waits.
                r.waits.push(now - since);
                let s = term.sessions[i as usize];
                *abandoned
                    .entry(term.groups[s.group as usize].clone())
                    .or_default() += 1;
                sched.release(kernel_id(i), now)
            }
        };
        r.apply(events, now);
    }
    let Replay {
        mut waits,
        admitted,
        ..
    } = r;
    waits.sort_unstable();
    let pct = |p: f64| -> f64 {
        if waits.is_empty() {
            return 0.0;
        }
        let i = ((waits.len() - 1) as f64 * p).round() as usize;
        waits[i] as f64 / 1000.0
    };
    let span = last.saturating_sub(TERM_START).max(1);
    Report {
        users: users.len() as u64,
        sessions: term.sessions.len(),
        admitted,
        wait_p50_s: pct(0.50),
        wait_p95_s: pct(0.95),
        wait_p99_s: pct(0.99),
        wait_max_s: waits.last().map_or(0.0, |w| *w as f64 / 1000.0),
        gpu_utilisation: if capacity == 0 {
            0.0
        } else {
            busy as f64 / (f64::from(capacity) * span as f64)
        },
        peak_queue,
        refused,
        abandoned,
        hourly,
        capacity,
    }
}

impl Report {
    /// GPUs in use and queued starts over the term, as an SVG chart.
    pub fn svg(&self) -> String {
        use plotters::prelude::*;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (900, 360)).into_drawing_area();
            let _ = root.fill(&WHITE);
            let hours = self.hourly.len().max(1) as f64;
            let top = self
                .hourly
                .iter()
                .map(|(u, q)| (*u).max(*q))
                .max()
                .unwrap_or(0)
                .max(self.capacity) as f64
                * 1.1
                + 1.0;
            if let Ok(mut chart) = ChartBuilder::on(&root)
                .caption(
                    "GPUs in use and starts waiting, per hour",
                    ("sans-serif", 18),
                )
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0f64..hours / 24.0 / 7.0, 0f64..top)
            {
                let _ = chart.configure_mesh().x_desc("week").draw();
                let week = |h: usize| h as f64 / 24.0 / 7.0;
                if let Ok(s) = chart.draw_series(LineSeries::new(
                    self.hourly
                        .iter()
                        .enumerate()
                        .map(|(h, (u, _))| (week(h), f64::from(*u))),
                    BLUE,
                )) {
                    s.label("GPUs in use")
                        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLUE));
                }
                if let Ok(s) = chart.draw_series(LineSeries::new(
                    self.hourly
                        .iter()
                        .enumerate()
                        .map(|(h, (_, q))| (week(h), f64::from(*q))),
                    RED,
                )) {
                    s.label("starts waiting")
                        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], RED));
                }
                let cap = f64::from(self.capacity);
                let _ = chart.draw_series(LineSeries::new(
                    [(0.0, cap), (hours / 24.0 / 7.0, cap)],
                    BLACK.mix(0.4),
                ));
                let _ = chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw();
            }
            let _ = root.present();
        }
        out
    }

    /// A plain-text summary for the terminal.
    pub fn text(&self) -> String {
        let mut s = format!(
            "users {}\nsessions {}\nadmitted {}\nwait p50 {:.0} s, p95 {:.0} s, p99 {:.0} s, max {:.0} s\nGPU utilisation {:.1}% of {} GPUs\npeak queue {}\n",
            self.users,
            self.sessions,
            self.admitted,
            self.wait_p50_s,
            self.wait_p95_s,
            self.wait_p99_s,
            self.wait_max_s,
            self.gpu_utilisation * 100.0,
            self.capacity,
            self.peak_queue
        );
        if self.refused.is_empty() && self.abandoned.is_empty() {
            s.push_str("no refusals, nobody gave up waiting\n");
        }
        for (g, by) in &self.refused {
            for (limit, n) in by {
                s.push_str(&format!("refused {g}: {n} ({limit})\n"));
            }
        }
        for (g, n) in &self.abandoned {
            s.push_str(&format!("gave up waiting {g}: {n}\n"));
        }
        s.push_str(&self.weekly_chart());
        s
    }

    /// Per week, the mean share of the GPUs in use (a bar), and the peaks of
    /// GPUs in use and of starts waiting: the shape of the term at a glance
    /// in a terminal.
    pub fn weekly_chart(&self) -> String {
        const WIDTH: usize = 40;
        let mut s = format!(
            "week  {:<width$} {:>11} {:>13}\n",
            format!("mean use of the {} GPUs", self.capacity),
            "peak in use",
            "peak waiting",
            width = WIDTH + 5
        );
        for (w, hours) in self.hourly.chunks(24 * 7).enumerate() {
            let mean =
                hours.iter().map(|h| f64::from(h.0)).sum::<f64>() / hours.len().max(1) as f64;
            let share = if self.capacity == 0 {
                0.0
            } else {
                mean / f64::from(self.capacity)
            };
            let filled = ((share * WIDTH as f64).round() as usize).min(WIDTH);
            s.push_str(&format!(
                "{:>4}  {}{} {:>3.0}% {:>11} {:>13}\n",
                w + 1,
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                share * 100.0,
                hours.iter().map(|h| h.0).max().unwrap_or(0),
                hours.iter().map(|h| h.1).max().unwrap_or(0),
            ));
        }
        s
    }
}

/// Generates and runs a workload.
pub fn simulate(cluster: Cluster, workload: &Workload) -> Report {
    let term = generate(workload);
    let patience = (workload.patience_minutes * MINUTE as f64) as Millis;
    run(
        cluster,
        workload.quotas(),
        &term,
        patience,
        Tuning::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: &str = r#"
weeks = 2
seed = 7
competition_weeks = [2]
[[cohort]]
name = "cohort"
count = 2
size = 20
guaranteed = { "H100-80GB" = 4 }
borrow_limit = { "*" = "unlimited" }
model = "H100-80GB"
user_limits = { max_kernels = 1 }
"#;

    #[test]
    fn a_small_term_runs_and_reports() {
        let w = Workload::from_toml(TERM).unwrap();
        assert_eq!(w.users(), 40);
        let cluster = Cluster::parse("2x4 H100-80GB").unwrap();
        let r = simulate(cluster.clone(), &w);
        assert_eq!(r.users, 40);
        assert!(r.sessions > 100, "{}", r.sessions);
        assert!(r.admitted > 0 && r.admitted <= r.sessions);
        assert!(
            r.gpu_utilisation > 0.0 && r.gpu_utilisation <= 1.0,
            "{}",
            r.gpu_utilisation
        );
        assert!(r.wait_p50_s <= r.wait_p95_s && r.wait_p95_s <= r.wait_p99_s);
        // Classes of 18 on 8 GPUs: some wait, and some give up after 30 minutes.
        assert!(r.peak_queue > 0);
        assert!(r.wait_max_s <= 30.0 * 60.0);
        // Those who gave up waited their whole patience, and that counts.
        assert!(!r.abandoned.is_empty(), "{:?}", r.abandoned);
        assert_eq!(r.wait_max_s, 30.0 * 60.0);
        assert!(r.svg().contains("<svg"));
        assert!(r.text().contains("GPU utilisation"));
        let chart = r.weekly_chart();
        assert_eq!(chart.lines().count(), 3, "{chart}");
        assert!(chart.lines().nth(1).unwrap().contains('#'), "{chart}");
        // Same seed, same term.
        let again = simulate(cluster, &w);
        assert_eq!(
            (again.admitted, again.peak_queue),
            (r.admitted, r.peak_queue)
        );
    }

    #[test]
    fn bad_workloads_say_why() {
        assert!(Workload::from_toml("weeks = 2\n").is_err());
        let e = Workload::from_toml("[[cohort]]\nname = \"a\"\nsize = 1\nattendance = 2.0\n")
            .unwrap_err();
        assert!(e.to_string().contains("attendance"), "{e}");
    }
}
