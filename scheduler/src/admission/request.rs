//! Admission's entry points: a request (admitted, queued or refused), a
//! release, a restore after a gateway restart, and new quotas; each returns
//! the events the gateway acts on.

use std::collections::VecDeque;

use super::state::{Allocation, Pending, QueueKey, Scheduler, decay};
use super::types::{
    Decision, Event, Grant, KernelId, Limit, Millis, Refusal, Request, Ticket, period_bounds,
};
use crate::quota::{DEFAULT_GROUP, GroupQuota, QuotaConfig};

impl Scheduler {
    /// Replaces the quotas. Running kernels keep their GPUs even where a
    /// quota shrank below their use; queued ones may now be admitted.
    pub fn set_quotas(&mut self, quotas: QuotaConfig, now: Millis) -> Vec<Event> {
        self.default_group = quotas
            .group(DEFAULT_GROUP)
            .cloned()
            .unwrap_or_else(GroupQuota::default_group);
        self.quotas = quotas;
        // Requests of groups that no longer exist wait in the default group's queues.
        let stale: Vec<QueueKey> = self
            .queues
            .keys()
            .filter(|(g, _)| g != DEFAULT_GROUP && self.quotas.group(g).is_none())
            .cloned()
            .collect();
        for key in stale {
            if let Some(q) = self.queues.remove(&key) {
                let to = (DEFAULT_GROUP.to_owned(), key.1.clone());
                for p in &q {
                    self.pending.insert(p.kernel, to.clone());
                }
                let dest = self.queues.entry(to).or_default();
                dest.extend(q);
                dest.make_contiguous().sort_by_key(|p| p.seq);
            }
        }
        // Queued requests the group may no longer ever hold would wait forever.
        let mut events = Vec::new();
        let keys: Vec<QueueKey> = self.queues.keys().cloned().collect();
        for key in keys {
            let ceiling = self.group_quota(&key.0).ceiling(&key.1);
            let q = self.queues.get_mut(&key).expect("key from the map");
            let (keep, drop): (VecDeque<Pending>, VecDeque<Pending>) =
                q.drain(..).partition(|p| ceiling.allows(u64::from(p.gpus)));
            *q = keep;
            if q.is_empty() {
                self.queues.remove(&key);
            }
            for p in drop {
                self.pending.remove(&p.kernel);
                if let Some(u) = self.users.get_mut(&p.user) {
                    u.kernels = u.kernels.saturating_sub(1);
                    u.gpus = u.gpus.saturating_sub(p.gpus);
                }
                events.push(Event::Refused {
                    kernel: p.kernel,
                    refusal: Refusal {
                        limit: Limit::GroupCeiling,
                        message: format!(
                            "the quotas changed: group {} may now hold at most {ceiling} {} GPUs, and this kernel asked for {}",
                            key.0, key.1, p.gpus
                        ),
                        current: f64::from(p.gpus),
                        maximum: ceiling.as_u64() as f64,
                        resets_at: None,
                    },
                });
            }
        }
        events.extend(self.dispatch(now));
        events
    }

    /// Usage a restarted gateway read back from its ledger: GPU-ms `user`
    /// used in the budget period that started at `period_start`.
    pub fn seed_usage(&mut self, user: &str, gpu_ms: f64, period_start: Millis) {
        let u = self.users.entry(user.to_owned()).or_default();
        u.closed_gpu_ms = gpu_ms;
        u.period_start = period_start;
    }

    /// Decides a request: admitted (now holding its GPUs), queued, or refused.
    /// Events are for other kernels (admitted from the queue, reclaimed).
    pub fn request(&mut self, req: Request, now: Millis) -> (Decision, Vec<Event>) {
        let kernel = req.kernel;
        let (decision, events) = self.decide(req, now);
        match decision {
            Some(d) => (d, events),
            None => {
                let ticket = self.ticket(kernel, now).unwrap_or(Ticket {
                    position: 1,
                    eta_seconds: 0,
                    model: String::new(),
                    waiting_for: String::new(),
                });
                (Decision::Queued(ticket), events)
            }
        }
    }

    /// [`Scheduler::request`] without computing a queued request's ticket
    /// (`None` means queued), for callers that do not show it (the simulator).
    pub fn decide(&mut self, req: Request, now: Millis) -> (Option<Decision>, Vec<Event>) {
        let group = self.group_name(req.group.as_deref());
        let limits = self.user_limits(&req.user, &group);
        let model = match &req.model {
            Some(m) => Some(m.clone()),
            None if req.gpus > 0 => self.pick_model(&group, req.gpus),
            None => None,
        };
        if let Err(refusal) = self.check_caps(&req, model.as_deref(), &group, &limits, now) {
            return (Some(Decision::Refused(refusal)), Vec::new());
        }
        let user = self.users.entry(req.user.clone()).or_default();
        user.kernels += 1;
        user.gpus += req.gpus;
        if req.gpus == 0 {
            self.allocate(req.kernel, &req.user, &group, None, 0, now);
            return (Some(Decision::Admitted(Grant::default())), Vec::new());
        }
        let model = model.unwrap_or_default();
        self.seq += 1;
        let key = (group, model);
        self.queues
            .entry(key.clone())
            .or_default()
            .push_back(Pending {
                kernel: req.kernel,
                user: req.user.clone(),
                gpus: req.gpus,
                seq: self.seq,
                since: now,
            });
        self.pending.insert(req.kernel, key);
        let mut events = self.dispatch(now);
        if let Some(i) = events
            .iter()
            .position(|e| matches!(e, Event::Admitted { kernel, .. } if *kernel == req.kernel))
        {
            let Event::Admitted { grant, .. } = events.remove(i) else {
                unreachable!("position matched an Admitted event")
            };
            return (Some(Decision::Admitted(grant)), events);
        }
        (None, events)
    }

    /// Re-installs a kernel a restarted gateway found running, on the devices
    /// it was given. Returns false (and admits it without GPUs) when those
    /// devices are unknown or already taken.
    pub fn restore(
        &mut self,
        kernel: KernelId,
        user: &str,
        group: Option<&str>,
        grant: &Grant,
        since: Millis,
    ) -> bool {
        let group = self.group_name(group);
        let u = self.users.entry(user.to_owned()).or_default();
        u.kernels += 1;
        let found = grant.model.as_ref().and_then(|m| {
            self.cluster.pools.iter().enumerate().find_map(|(p, pool)| {
                if &pool.model != m {
                    return None;
                }
                pool.nodes.iter().enumerate().find_map(|(n, node)| {
                    if grant.node.as_deref() != Some(node.name.as_str()) {
                        return None;
                    }
                    let idx: Option<Vec<u32>> = grant
                        .devices
                        .iter()
                        .map(|id| {
                            node.devices
                                .iter()
                                .position(|d| &d.id == id)
                                .map(|i| i as u32)
                        })
                        .collect();
                    idx.filter(|ix| ix.iter().all(|i| self.free[p][n].contains(i)))
                        .map(|ix| (p, n, ix))
                })
            })
        });
        let Some((p, n, idx)) = found else {
            self.allocate(kernel, user, &group, None, 0, since);
            return grant.devices.is_empty();
        };
        self.free[p][n].retain(|d| !idx.contains(d));
        self.users.entry(user.to_owned()).or_default().gpus += idx.len() as u32;
        let model = self.cluster.pools[p].model.clone();
        self.install(
            kernel,
            Allocation {
                user: user.to_owned(),
                group,
                place: Some((p, n)),
                model: Some(model),
                devices: idx,
                borrowed: grant.borrowed,
                since,
                reclaiming: false,
            },
        );
        true
    }

    /// A kernel ended, or a queued request was cancelled: frees what it held
    /// and admits what now fits. Unknown kernels are ignored.
    pub fn release(&mut self, kernel: KernelId, now: Millis) -> Vec<Event> {
        if let Some(key) = self.pending.remove(&kernel) {
            if let Some(q) = self.queues.get_mut(&key) {
                if let Some(i) = q.iter().position(|p| p.kernel == kernel) {
                    let p = q.remove(i).expect("index from position");
                    if let Some(u) = self.users.get_mut(&p.user) {
                        u.kernels = u.kernels.saturating_sub(1);
                        u.gpus = u.gpus.saturating_sub(p.gpus);
                    }
                }
                if q.is_empty() {
                    self.queues.remove(&key);
                }
            }
            return self.dispatch(now);
        }
        let Some(a) = self.running.remove(&kernel) else {
            return Vec::new();
        };
        let count = a.devices.len() as u32;
        let held_ms = now.saturating_sub(a.since) as f64;
        if let Some((p, n)) = a.place {
            self.free[p][n].extend(&a.devices);
        }
        if let Some(m) = &a.model {
            let g = self.groups.entry(a.group.clone()).or_default();
            if let Some(used) = g.used.get_mut(m) {
                *used = used.saturating_sub(count);
            }
            decay(g, now, self.tuning.usage_half_life_ms);
            g.recent += held_ms * f64::from(count);
            let ema = self.hold_ms.entry(m.clone()).or_insert(held_ms);
            *ema = 0.8 * *ema + 0.2 * held_ms;
            if a.reclaiming
                && let Some(r) = self.reclaiming.get_mut(m)
            {
                *r = r.saturating_sub(count);
            }
        }
        let limits = self.user_limits(&a.user, &a.group);
        let period = limits.period.unwrap_or_default();
        let (start, _) = period_bounds(period, now);
        if let Some(u) = self.users.get_mut(&a.user) {
            u.kernels = u.kernels.saturating_sub(1);
            u.gpus = u.gpus.saturating_sub(count);
            u.running.retain(|k| *k != kernel);
            if u.period_start < start {
                u.period_start = start;
                u.closed_gpu_ms = 0.0;
            }
            u.closed_gpu_ms += f64::from(count) * now.saturating_sub(a.since.max(start)) as f64;
            if u.kernels == 0 && u.closed_gpu_ms == 0.0 {
                self.users.remove(&a.user);
            }
        }
        self.dispatch(now)
    }
}
