//! Replaying a term through the real [`Scheduler`] with a virtual clock:
//! sessions arrive, wait (up to their patience), run and end, and the
//! replay measures what users saw.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::report::Report;
use super::term::{HOUR, TERM_START, Term};
use crate::admission::{Decision, Event, Grant, Millis, Request, Scheduler, Tuning};
use crate::inventory::Cluster;
use crate::quota::{Amount, QuotaConfig};

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
    fn admit(&mut self, i: u32, grant: &Grant, now: Millis) {
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
