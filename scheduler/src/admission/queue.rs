//! Serving the queues: dominant-share order (guarantees before borrowing,
//! the starved first), head-of-line blocking per model, reclaiming GPUs
//! lent to other groups, and a queued kernel's ticket.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use super::state::{Pending, QueueKey, Scheduler};
use super::types::{Event, KernelId, Millis, Ticket};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Priority {
    pub(super) starved: bool,
    pub(super) borrowing: bool,
    pub(super) share: f64,
    pub(super) seq: u64,
}

impl Eq for Priority {}
impl Ord for Priority {
    /// Greater is served first (for `BinaryHeap`).
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.starved, other.starved) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            // Among the starved, first come, first served.
            (true, true) => other.seq.cmp(&self.seq),
            (false, false) => other
                .borrowing
                .cmp(&self.borrowing)
                .then(other.share.total_cmp(&self.share))
                .then(other.seq.cmp(&self.seq)),
        }
    }
}
impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub(super) enum Fit {
    Place(usize, usize),
    GroupFull,
    NoRoom,
}

impl Scheduler {
    /// The fair-share priority of the head of queue `key`.
    pub(super) fn priority(
        &self,
        key: &QueueKey,
        head: &Pending,
        now: Millis,
        extra: u32,
    ) -> Priority {
        let (group, model) = key;
        let quota = self.group_quota(group);
        let state = self.groups.get(group);
        let used = |m: &str| state.and_then(|g| g.used.get(m)).copied().unwrap_or(0);
        let mut share: f64 = 0.0;
        for (m, cap) in &self.capacity {
            let mine = used(m) + if m == model { extra } else { 0 };
            share = share.max(f64::from(mine) / f64::from((*cap).max(1)));
        }
        if let Some(g) = state {
            let half = self.tuning.usage_half_life_ms.max(1) as f64;
            let age = now.saturating_sub(g.recent_at) as f64;
            let recent = g.recent * 0.5f64.powf(age / half);
            share += recent / (f64::from(self.total_gpus.max(1)) * half);
        }
        Priority {
            starved: now.saturating_sub(head.since) >= self.tuning.starvation_ms,
            borrowing: used(model) + extra + head.gpus > quota.guaranteed(model),
            share: share / quota.weight,
            seq: head.seq,
        }
    }

    /// Where the head of `key` would go now.
    pub(super) fn fit(&self, key: &QueueKey, gpus: u32) -> Fit {
        let (group, model) = key;
        let used = self
            .groups
            .get(group)
            .and_then(|g| g.used.get(model))
            .copied()
            .unwrap_or(0);
        if !self
            .group_quota(group)
            .ceiling(model)
            .allows(u64::from(used) + u64::from(gpus))
        {
            return Fit::GroupFull;
        }
        // Best fit: the node with the fewest free devices that still has enough.
        let mut best: Option<(usize, usize, usize)> = None;
        for (p, pool) in self.cluster.pools.iter().enumerate() {
            if &pool.model != model {
                continue;
            }
            for (n, free) in self.free[p].iter().enumerate() {
                if free.len() >= gpus as usize && best.is_none_or(|(_, _, f)| free.len() < f) {
                    best = Some((p, n, free.len()));
                }
            }
        }
        match best {
            Some((p, n, _)) => Fit::Place(p, n),
            None => Fit::NoRoom,
        }
    }

    /// Admits queued requests that fit, fairest first. Call it after anything
    /// that frees GPUs or changes quotas, and now and then (starvation ages).
    pub fn dispatch(&mut self, now: Millis) -> Vec<Event> {
        let mut events = Vec::new();
        let mut heap: BinaryHeap<(Priority, QueueKey)> = self
            .queues
            .iter()
            .filter_map(|(k, q)| q.front().map(|h| (self.priority(k, h, now, 0), k.clone())))
            .collect();
        let mut blocked_models: Vec<String> = Vec::new();
        while let Some((prio, key)) = heap.pop() {
            if blocked_models.contains(&key.1) {
                continue;
            }
            let Some(head) = self.queues.get(&key).and_then(|q| q.front()).cloned() else {
                continue;
            };
            match self.fit(&key, head.gpus) {
                Fit::GroupFull => continue,
                Fit::NoRoom => {
                    if !prio.borrowing {
                        events.extend(self.reclaim_for(&key, head.gpus, now));
                    }
                    blocked_models.push(key.1.clone());
                }
                Fit::Place(p, n) => {
                    let (group, model) = key.clone();
                    let q = self.queues.get_mut(&key).expect("queue of a popped key");
                    q.pop_front();
                    let next = q.front().cloned();
                    if q.is_empty() {
                        self.queues.remove(&key);
                    }
                    self.pending.remove(&head.kernel);
                    let used = self
                        .groups
                        .get(&group)
                        .and_then(|g| g.used.get(&model))
                        .copied()
                        .unwrap_or(0);
                    let guaranteed = self.group_quota(&group).guaranteed(&model);
                    let borrowed = (used + head.gpus)
                        .saturating_sub(guaranteed.max(used))
                        .min(head.gpus);
                    let grant = self.allocate(
                        head.kernel,
                        &head.user,
                        &group,
                        Some((p, n, model, head.gpus)),
                        borrowed,
                        now,
                    );
                    events.push(Event::Admitted {
                        kernel: head.kernel,
                        grant,
                    });
                    if let Some(next) = next {
                        heap.push((self.priority(&key, &next, now, 0), key));
                    }
                }
            }
        }
        events
    }

    /// Marks borrowed kernels of `key.1` held by other groups for reclaim,
    /// newest first, until enough GPUs are free or on their way.
    pub(super) fn reclaim_for(&mut self, key: &QueueKey, gpus: u32, now: Millis) -> Vec<Event> {
        let (group, model) = key;
        // What the group's queue wants within its guarantee, head first.
        let mut room = self
            .group_quota(group)
            .guaranteed(model)
            .saturating_sub(self.group_usage(group, model));
        let mut want = 0;
        for p in self.queues.get(key).into_iter().flatten() {
            if p.gpus > room {
                break;
            }
            room -= p.gpus;
            want += p.gpus;
        }
        let want = want.max(gpus);
        let coming = self.free_of(model) + self.reclaiming.get(model).copied().unwrap_or(0);
        if coming >= want {
            return Vec::new();
        }
        let mut need = want - coming;
        let mut victims: Vec<(Millis, KernelId)> = self
            .running
            .iter()
            .filter(|(_, a)| {
                a.borrowed > 0
                    && !a.reclaiming
                    && &a.group != group
                    && a.model.as_deref() == Some(model)
            })
            .map(|(k, a)| (a.since, *k))
            .collect();
        victims.sort_unstable_by(|a, b| b.cmp(a));
        let mut events = Vec::new();
        for (_, kernel) in victims {
            if need == 0 {
                break;
            }
            let a = self.running.get_mut(&kernel).expect("victim is running");
            a.reclaiming = true;
            let count = a.devices.len() as u32;
            *self.reclaiming.entry(model.clone()).or_default() += count;
            need = need.saturating_sub(count);
            events.push(Event::Reclaim {
                kernel,
                for_group: group.clone(),
                deadline: now + self.tuning.reclaim_grace_ms,
            });
        }
        events
    }

    /// Where a queued kernel stands: its place in the order the queues would
    /// be served in if nothing else changed.
    pub fn ticket(&self, kernel: KernelId, now: Millis) -> Option<Ticket> {
        let key = self.pending.get(&kernel)?;
        let model = &key.1;
        let position = self.order(model, now).iter().position(|k| *k == kernel)? + 1;
        let hold = self
            .hold_ms
            .get(model)
            .copied()
            .unwrap_or(self.tuning.default_hold_ms as f64);
        let cap = f64::from(self.capacity.get(model).copied().unwrap_or(1).max(1));
        let eta_seconds = (position as f64 / cap * hold / 1000.0).ceil() as u64;
        let used = self
            .groups
            .get(&key.0)
            .and_then(|g| g.used.get(model))
            .copied()
            .unwrap_or(0);
        let ceiling = self.group_quota(&key.0).ceiling(model);
        let waiting_for = if !ceiling.allows(u64::from(used) + 1) {
            format!("group {} holds {used} of its {ceiling} {model} GPUs", key.0)
        } else {
            format!(
                "all {} {model} GPUs are in use",
                self.capacity.get(model).copied().unwrap_or(0)
            )
        };
        Some(Ticket {
            position,
            eta_seconds,
            model: model.clone(),
            waiting_for,
        })
    }

    /// The queued kernels of `model`, in the order they would be served:
    /// the same priorities as `dispatch`, with each group's share growing as
    /// its requests are served.
    pub fn order(&self, model: &str, now: Millis) -> Vec<KernelId> {
        let mut cursors: Vec<(&QueueKey, &VecDeque<Pending>, usize, u32)> = self
            .queues
            .iter()
            .filter(|((_, m), _)| m == model)
            .map(|(k, q)| (k, q, 0usize, 0u32))
            .collect();
        let mut heap: BinaryHeap<(Priority, usize)> = cursors
            .iter()
            .enumerate()
            .filter_map(|(i, (k, q, _, _))| q.front().map(|h| (self.priority(k, h, now, 0), i)))
            .collect();
        let mut out = Vec::new();
        while let Some((_, i)) = heap.pop() {
            let (key, q, pos, extra) = &mut cursors[i];
            let p = &q[*pos];
            out.push(p.kernel);
            *extra += p.gpus;
            *pos += 1;
            if let Some(next) = q.get(*pos) {
                let prio = self.priority(key, next, now, *extra);
                heap.push((prio, i));
            }
        }
        out
    }
}
