//! Placing one request: the user's caps and budget (a refusal says which
//! limit), the GPU model, and a best-fit node with free devices.

use super::state::{Allocation, Scheduler};
use super::types::{Grant, KernelId, Limit, Millis, Refusal, Request, fmt_ms, period_bounds};
use crate::quota::{Period, UserLimits};

impl Scheduler {
    /// The model a request without one gets: where the group still has
    /// guaranteed GPUs, else where most are free, among models big enough.
    /// `None` when no pool has a node that large.
    pub(super) fn pick_model(&self, group: &str, gpus: u32) -> Option<String> {
        let quota = self.group_quota(group);
        let used = self.groups.get(group);
        let mut best: Option<(bool, bool, u32, &str)> = None;
        for pool in &self.cluster.pools {
            if pool.largest_node() < gpus as usize {
                continue;
            }
            // Models the group may never hold this many of only if nothing else fits,
            // so the refusal names the group's ceiling.
            let allowed = quota.ceiling(&pool.model).allows(u64::from(gpus));
            let m = pool.model.as_str();
            let held = used.and_then(|g| g.used.get(m)).copied().unwrap_or(0);
            let guaranteed = held + gpus <= quota.guaranteed(m);
            let free = self.free_of(m);
            if best.is_none_or(|(ba, bg, bf, _)| (allowed, guaranteed, free) > (ba, bg, bf)) {
                best = Some((allowed, guaranteed, free, m));
            }
        }
        best.map(|(_, _, _, m)| m.to_owned())
    }

    pub(super) fn check_caps(
        &mut self,
        req: &Request,
        model: Option<&str>,
        group: &str,
        limits: &UserLimits,
        now: Millis,
    ) -> Result<(), Refusal> {
        let refuse = |limit, message: String, current: f64, maximum: f64| Refusal {
            limit,
            message,
            current,
            maximum,
            resets_at: None,
        };
        if !req.role_max_gpus.allows(u64::from(req.gpus)) {
            return Err(refuse(
                Limit::RoleGpus,
                format!(
                    "your role may ask for at most {} GPUs in one kernel; you asked for {}",
                    req.role_max_gpus, req.gpus
                ),
                f64::from(req.gpus),
                req.role_max_gpus.as_u64() as f64,
            ));
        }
        if req.gpus > 0 {
            let fits = |p: &&crate::inventory::Pool| {
                model.is_none_or(|m| p.model == m) && p.largest_node() >= req.gpus as usize
            };
            if !self.cluster.pools.iter().any(|p| fits(&p)) {
                let largest = self
                    .cluster
                    .pools
                    .iter()
                    .filter(|p| model.is_none_or(|m| p.model == m))
                    .map(|p| p.largest_node())
                    .max();
                let what = model.map_or("GPU".to_owned(), |m| format!("{m} GPU"));
                return Err(refuse(
                    Limit::Capacity,
                    match largest {
                        None if self.total_gpus == 0 => {
                            "this lab has no GPUs; start a CPU kernel instead".to_owned()
                        }
                        None => format!(
                            "there is no {what} here; models: {}",
                            self.capacity.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                        Some(n) => format!(
                            "no node has {} {what}s; the most on one node is {n}",
                            req.gpus
                        ),
                    },
                    f64::from(req.gpus),
                    largest.unwrap_or(0) as f64,
                ));
            }
            if let Some(m) = model {
                let ceiling = self.group_quota(group).ceiling(m);
                if !ceiling.allows(u64::from(req.gpus)) {
                    return Err(refuse(
                        Limit::GroupCeiling,
                        format!(
                            "your group {group} may hold at most {ceiling} {m} GPUs at once; you asked for {}",
                            req.gpus
                        ),
                        f64::from(req.gpus),
                        ceiling.as_u64() as f64,
                    ));
                }
            }
        }
        let (kernels, gpus) = self
            .users
            .get(&req.user)
            .map_or((0, 0), |u| (u.kernels, u.gpus));
        if let Some(max) = limits.max_kernels
            && !max.allows(u64::from(kernels) + 1)
        {
            return Err(refuse(
                Limit::UserKernels,
                format!(
                    "you have {kernels} kernels running or queued, your limit is {max}: shut one down first"
                ),
                f64::from(kernels),
                max.as_u64() as f64,
            ));
        }
        if req.gpus > 0 {
            if let Some(max) = limits.max_gpus
                && !max.allows(u64::from(gpus) + u64::from(req.gpus))
            {
                return Err(refuse(
                    Limit::UserGpus,
                    format!(
                        "your kernels hold or wait for {gpus} GPUs, your limit is {max}: you asked for {} more",
                        req.gpus
                    ),
                    f64::from(gpus),
                    max.as_u64() as f64,
                ));
            }
            if let Some(hours) = limits.gpu_hours {
                let period = limits.period.unwrap_or_default();
                let (used_ms, resets) = self.budget_used(&req.user, period, now);
                let used = used_ms / 3_600_000.0;
                if used >= hours {
                    return Err(Refusal {
                        resets_at: Some(resets),
                        ..refuse(
                            Limit::GpuBudget,
                            format!(
                                "you have used {used:.2} of your {hours} GPU-hours this {}; it resets at {}",
                                match period {
                                    Period::Day => "day",
                                    Period::Week => "week",
                                    Period::Month => "month",
                                },
                                fmt_ms(resets)
                            ),
                            used,
                            hours,
                        )
                    });
                }
            }
        }
        Ok(())
    }

    /// GPU-ms `user` used in the current `period`, and when it resets.
    pub(super) fn budget_used(&mut self, user: &str, period: Period, now: Millis) -> (f64, Millis) {
        let (start, end) = period_bounds(period, now);
        let running: f64 = self.users.get(user).map_or(0.0, |u| {
            u.running
                .iter()
                .filter_map(|k| self.running.get(k))
                .map(|a| a.devices.len() as f64 * now.saturating_sub(a.since.max(start)) as f64)
                .sum()
        });
        let u = self.users.entry(user.to_owned()).or_default();
        if u.period_start < start {
            u.period_start = start;
            u.closed_gpu_ms = 0.0;
        }
        (u.closed_gpu_ms + running, end)
    }

    pub(super) fn allocate(
        &mut self,
        kernel: KernelId,
        user: &str,
        group: &str,
        place: Option<(usize, usize, String, u32)>,
        borrowed: u32,
        now: Millis,
    ) -> Grant {
        let (place, model, devices) = match place {
            Some((p, n, model, count)) => {
                let free = &mut self.free[p][n];
                let take = free.split_off(free.len() - count as usize);
                (Some((p, n)), Some(model), take)
            }
            None => (None, None, Vec::new()),
        };
        let a = Allocation {
            user: user.to_owned(),
            group: group.to_owned(),
            place,
            model,
            devices,
            borrowed,
            since: now,
            reclaiming: false,
        };
        let grant = self.grant_from(&a);
        self.install(kernel, a);
        grant
    }
}
