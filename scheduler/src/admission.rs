//! Admission: who gets which GPU, who waits, who is refused.
//!
//! [`Scheduler`] is a plain state machine with an explicit clock: the
//! gateway holds it behind one mutex (so concurrent starts are decided one
//! at a time and can never overshoot), and `lab simulate` drives the very
//! same code with a virtual clock.
//!
//! A request is checked against the user's caps and budget (a refusal says
//! which limit, the usage and when a budget resets), then joins its group's
//! queue for its GPU model, and [`Scheduler::dispatch`] admits whatever fits:
//! queues are served in dominant-share order (current use plus decayed recent
//! use, divided by the group's weight), requests within a group's guarantee
//! before borrowing ones, and any request that waited longer than the
//! starvation limit before all others. A request that does not fit blocks
//! smaller ones of the same model behind it, so large requests are never
//! starved by a stream of small ones. When a request within its group's
//! guarantee finds no free GPU, GPUs lent to other groups are reclaimed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use serde::Serialize;

use crate::inventory::Cluster;
use crate::quota::{Amount, DEFAULT_GROUP, GroupQuota, Period, QuotaConfig, UserLimits};

/// Milliseconds since the Unix epoch (or since a simulation's start).
pub type Millis = u64;
pub type KernelId = uuid::Uuid;

/// Tunables of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// A request waiting this long goes before every fairer one.
    pub starvation_ms: Millis,
    /// Warning time a kernel on a reclaimed GPU gets before it is stopped.
    pub reclaim_grace_ms: Millis,
    /// Half-life of the recent usage that counts in fair share.
    pub usage_half_life_ms: Millis,
    /// Assumed GPU holding time before any kernel ended, for ETAs.
    pub default_hold_ms: Millis,
    /// The cap on a user's kernels where no quota sets `max_kernels` (the
    /// gateway sets one, so no user runs kernels without bound by default).
    pub default_max_kernels: Option<u32>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            starvation_ms: 2 * 3600 * 1000,
            reclaim_grace_ms: 120 * 1000,
            usage_half_life_ms: 24 * 3600 * 1000,
            default_hold_ms: 1800 * 1000,
            default_max_kernels: None,
        }
    }
}

/// One kernel's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub kernel: KernelId,
    pub user: String,
    /// The user's group; `None` means the default group.
    pub group: Option<String>,
    pub gpus: u32,
    /// A GPU model or MIG profile; `None` picks one.
    pub model: Option<String>,
    /// The most GPUs the user's role may ask for in one kernel.
    pub role_max_gpus: Amount,
}

/// Where an admitted kernel runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Grant {
    /// The model of the devices, `None` for a CPU kernel.
    pub model: Option<String>,
    pub node: Option<String>,
    /// `CUDA_VISIBLE_DEVICES` tokens.
    pub devices: Vec<String>,
    /// Whether the devices exist (else they are modelled, and the kernel runs on CPU).
    pub real: bool,
    /// How many of the devices are borrowed beyond the group's guarantee.
    pub borrowed: u32,
    /// CPU and memory as Kubernetes spells them (`2`, `8Gi`), for backends
    /// that enforce them (a pod's requests and limits). Admission leaves
    /// them unset; the gateway fills them in from the start request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Where a queued request stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    /// 1 is next.
    pub position: usize,
    /// A rough estimate, from how long kernels of this model have held GPUs.
    pub eta_seconds: u64,
    pub model: String,
    /// What it waits for, in words.
    pub waiting_for: String,
}

/// A limit a refused request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// More GPUs in one kernel than the user's role allows.
    RoleGpus,
    /// The user's concurrent kernels.
    UserKernels,
    /// The user's concurrent GPUs.
    UserGpus,
    /// The user's GPU-hours this period.
    GpuBudget,
    /// More than the group may ever hold of the model.
    GroupCeiling,
    /// No such GPU model here, or more GPUs than one node holds.
    Capacity,
}

/// Why a request was refused, in terms the user can act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub limit: Limit,
    pub message: String,
    /// Current usage of the limited quantity, and its maximum.
    pub current: f64,
    pub maximum: f64,
    /// When a budget resets (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Admitted(Grant),
    Queued(Ticket),
    Refused(Refusal),
}

/// What the gateway must act on after a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A queued kernel got its GPUs: launch it.
    Admitted { kernel: KernelId, grant: Grant },
    /// A kernel holds borrowed GPUs its owner group needs: warn it, save its
    /// notebook, and stop it at `deadline` (then `release` it).
    Reclaim {
        kernel: KernelId,
        for_group: String,
        deadline: Millis,
    },
    /// A queued kernel can no longer be admitted (the quotas changed).
    Refused { kernel: KernelId, refusal: Refusal },
}

#[derive(Debug, Clone)]
struct Allocation {
    user: String,
    group: String,
    /// Pool index and node index, for GPU kernels.
    place: Option<(usize, usize)>,
    model: Option<String>,
    /// Device indexes on the node.
    devices: Vec<u32>,
    borrowed: u32,
    since: Millis,
    reclaiming: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    kernel: KernelId,
    user: String,
    gpus: u32,
    seq: u64,
    since: Millis,
}

#[derive(Debug, Default, Clone)]
struct GroupState {
    used: HashMap<String, u32>,
    /// Decayed GPU-milliseconds, as of `recent_at`.
    recent: f64,
    recent_at: Millis,
}

#[derive(Debug, Default, Clone)]
struct UserState {
    /// Running and queued kernels.
    kernels: u32,
    /// GPUs of running and queued kernels.
    gpus: u32,
    /// GPU-ms of kernels that ended in the budget period starting at `period_start`.
    closed_gpu_ms: f64,
    period_start: Millis,
    running: Vec<KernelId>,
}

/// The queue of one group for one model.
type QueueKey = (String, String);

/// Admission and queue state. See the module docs.
#[derive(Debug, Clone)]
pub struct Scheduler {
    cluster: Cluster,
    quotas: QuotaConfig,
    default_group: GroupQuota,
    tuning: Tuning,
    /// pool → node → free device indexes.
    free: Vec<Vec<Vec<u32>>>,
    capacity: HashMap<String, u32>,
    total_gpus: u32,
    running: HashMap<KernelId, Allocation>,
    groups: HashMap<String, GroupState>,
    users: HashMap<String, UserState>,
    queues: BTreeMap<QueueKey, VecDeque<Pending>>,
    pending: HashMap<KernelId, QueueKey>,
    seq: u64,
    /// Mean GPU holding time per model (exponential moving average, ms).
    hold_ms: HashMap<String, f64>,
    /// GPUs being reclaimed per model, not yet free.
    reclaiming: HashMap<String, u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Priority {
    starved: bool,
    borrowing: bool,
    share: f64,
    seq: u64,
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

enum Fit {
    Place(usize, usize),
    GroupFull,
    NoRoom,
}

impl Scheduler {
    pub fn new(cluster: Cluster, quotas: QuotaConfig, tuning: Tuning) -> Self {
        let free = cluster
            .pools
            .iter()
            .map(|p| {
                p.nodes
                    .iter()
                    .map(|n| (0..n.devices.len() as u32).rev().collect())
                    .collect()
            })
            .collect();
        let mut capacity: HashMap<String, u32> = HashMap::new();
        for p in &cluster.pools {
            *capacity.entry(p.model.clone()).or_default() += p.gpus() as u32;
        }
        let total_gpus = capacity.values().sum();
        let default_group = quotas
            .group(DEFAULT_GROUP)
            .cloned()
            .unwrap_or_else(GroupQuota::default_group);
        Scheduler {
            cluster,
            quotas,
            default_group,
            tuning,
            free,
            capacity,
            total_gpus,
            running: HashMap::new(),
            groups: HashMap::new(),
            users: HashMap::new(),
            queues: BTreeMap::new(),
            pending: HashMap::new(),
            seq: 0,
            hold_ms: HashMap::new(),
            reclaiming: HashMap::new(),
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn quotas(&self) -> &QuotaConfig {
        &self.quotas
    }

    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    fn group_quota(&self, name: &str) -> &GroupQuota {
        self.quotas.group(name).unwrap_or(&self.default_group)
    }

    fn group_name(&self, group: Option<&str>) -> String {
        match group {
            Some(g) if self.quotas.group(g).is_some() => g.to_owned(),
            _ => DEFAULT_GROUP.to_owned(),
        }
    }

    /// The caps that apply to `user` in `group`.
    pub fn user_limits(&self, user: &str, group: &str) -> UserLimits {
        let base = &self.group_quota(group).user_limits;
        let mut limits = match self.quotas.user(user) {
            Some(u) => u.limits.over(base),
            None => base.clone(),
        };
        if limits.max_kernels.is_none() {
            limits.max_kernels = self.tuning.default_max_kernels.map(Amount::Finite);
        }
        limits
    }

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

    /// The model a request without one gets: where the group still has
    /// guaranteed GPUs, else where most are free, among models big enough.
    /// `None` when no pool has a node that large.
    fn pick_model(&self, group: &str, gpus: u32) -> Option<String> {
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

    fn free_of(&self, model: &str) -> u32 {
        self.cluster
            .pools
            .iter()
            .zip(&self.free)
            .filter(|(p, _)| p.model == model)
            .map(|(_, nodes)| nodes.iter().map(|n| n.len() as u32).sum::<u32>())
            .sum()
    }

    fn check_caps(
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
    fn budget_used(&mut self, user: &str, period: Period, now: Millis) -> (f64, Millis) {
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

    fn allocate(
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

    /// What a kernel holds, as the gateway shows it.
    fn grant_from(&self, a: &Allocation) -> Grant {
        Grant {
            model: a.model.clone(),
            node: a
                .place
                .map(|(p, n)| self.cluster.pools[p].nodes[n].name.clone()),
            devices: a.place.map_or_else(Vec::new, |(p, n)| {
                let node = &self.cluster.pools[p].nodes[n];
                a.devices
                    .iter()
                    .map(|&d| node.devices[d as usize].id.clone())
                    .collect()
            }),
            real: a.place.is_some_and(|(p, _)| self.cluster.pools[p].real),
            borrowed: a.borrowed,
            ..Grant::default()
        }
    }

    /// Records an allocation whose devices were already taken from `free`.
    fn install(&mut self, kernel: KernelId, a: Allocation) {
        if let Some(m) = &a.model {
            *self
                .groups
                .entry(a.group.clone())
                .or_default()
                .used
                .entry(m.clone())
                .or_default() += a.devices.len() as u32;
        }
        self.users
            .entry(a.user.clone())
            .or_default()
            .running
            .push(kernel);
        self.running.insert(kernel, a);
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

    /// The fair-share priority of the head of queue `key`.
    fn priority(&self, key: &QueueKey, head: &Pending, now: Millis, extra: u32) -> Priority {
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
    fn fit(&self, key: &QueueKey, gpus: u32) -> Fit {
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
    fn reclaim_for(&mut self, key: &QueueKey, gpus: u32, now: Millis) -> Vec<Event> {
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

    /// Whether `kernel` waits in a queue.
    pub fn is_queued(&self, kernel: KernelId) -> bool {
        self.pending.contains_key(&kernel)
    }

    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    /// What the ops pages show.
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let pools = self
            .cluster
            .pools
            .iter()
            .zip(&self.free)
            .map(|(p, free)| PoolUsage {
                name: p.name.clone(),
                model: p.model.clone(),
                real: p.real,
                gpus: p.gpus() as u32,
                free: free.iter().map(|n| n.len() as u32).sum(),
            })
            .collect();
        let mut groups: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for (name, g) in &self.groups {
            let used: BTreeMap<String, u32> = g
                .used
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(m, n)| (m.clone(), *n))
                .collect();
            if !used.is_empty() {
                groups.insert(name.clone(), used);
            }
        }
        let mut queue = Vec::new();
        let models: Vec<String> = self.capacity.keys().cloned().collect();
        for model in models {
            for (i, kernel) in self.order(&model, now).into_iter().enumerate() {
                let key = &self.pending[&kernel];
                let p = self.queues[key]
                    .iter()
                    .find(|p| p.kernel == kernel)
                    .expect("ordered kernels are queued");
                queue.push(QueuedKernel {
                    kernel,
                    user: p.user.clone(),
                    group: key.0.clone(),
                    model: model.clone(),
                    gpus: p.gpus,
                    position: i + 1,
                    waited_seconds: now.saturating_sub(p.since) / 1000,
                });
            }
        }
        Snapshot {
            pools,
            groups,
            queue,
            reclaiming: self.running.values().filter(|a| a.reclaiming).count(),
        }
    }

    /// Invariant checks, for tests: panics with what is broken.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut used: HashMap<(String, String), u32> = HashMap::new();
        let mut per_user: HashMap<String, (u32, u32)> = HashMap::new();
        let mut taken: std::collections::HashSet<(usize, usize, u32)> = Default::default();
        for (k, a) in &self.running {
            if let (Some((p, n)), Some(m)) = (a.place, &a.model) {
                *used.entry((a.group.clone(), m.clone())).or_default() += a.devices.len() as u32;
                for d in &a.devices {
                    assert!(taken.insert((p, n, *d)), "device {p}/{n}/{d} given twice");
                    assert!(
                        !self.free[p][n].contains(d),
                        "device {p}/{n}/{d} both free and held by {k}"
                    );
                }
            }
            let e = per_user.entry(a.user.clone()).or_default();
            e.0 += 1;
            e.1 += a.devices.len() as u32;
        }
        for (p, pool) in self.cluster.pools.iter().enumerate() {
            for (n, node) in pool.nodes.iter().enumerate() {
                let held = taken
                    .iter()
                    .filter(|(tp, tn, _)| *tp == p && *tn == n)
                    .count();
                assert_eq!(
                    held + self.free[p][n].len(),
                    node.devices.len(),
                    "devices lost on {p}/{n}"
                );
            }
        }
        for ((g, m), n) in &used {
            let recorded = self
                .groups
                .get(g)
                .and_then(|s| s.used.get(m))
                .copied()
                .unwrap_or(0);
            assert_eq!(recorded, *n, "group {g} usage of {m}");
        }
        for (key, q) in &self.queues {
            assert!(!q.is_empty(), "empty queue {key:?} kept");
            for p in q {
                assert_eq!(self.pending.get(&p.kernel), Some(key));
                let e = per_user.entry(p.user.clone()).or_default();
                e.0 += 1;
                e.1 += p.gpus;
            }
        }
        for (u, (k, g)) in per_user {
            let s = self
                .users
                .get(&u)
                .expect("user state for a user with kernels");
            assert_eq!((s.kernels, s.gpus), (k, g), "user {u} counts");
        }
    }

    /// GPUs of `model` that `group` holds.
    pub fn group_usage(&self, group: &str, model: &str) -> u32 {
        self.groups
            .get(group)
            .and_then(|g| g.used.get(model))
            .copied()
            .unwrap_or(0)
    }

    /// The devices a running kernel holds.
    pub fn grant_of(&self, kernel: KernelId) -> Option<Grant> {
        self.running.get(&kernel).map(|a| self.grant_from(a))
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }
}

fn decay(g: &mut GroupState, now: Millis, half_life: Millis) {
    let age = now.saturating_sub(g.recent_at) as f64;
    g.recent *= 0.5f64.powf(age / half_life.max(1) as f64);
    g.recent_at = now;
}

/// The start of the budget period holding `now`, and of the next one (ms).
pub fn period_bounds(period: Period, now: Millis) -> (Millis, Millis) {
    let t = chrono::DateTime::from_timestamp_millis(now as i64).unwrap_or_default();
    let (s, e) = period.bounds(t);
    (
        s.timestamp_millis() as Millis,
        e.timestamp_millis() as Millis,
    )
}

/// `%Y-%m-%dT%H:%M:%SZ` for messages.
pub fn fmt_ms(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// GPU use of one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolUsage {
    pub name: String,
    pub model: String,
    pub real: bool,
    pub gpus: u32,
    pub free: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueuedKernel {
    pub kernel: KernelId,
    pub user: String,
    pub group: String,
    pub model: String,
    pub gpus: u32,
    pub position: usize,
    pub waited_seconds: u64,
}

/// The allocation and the queue, for the ops view.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub pools: Vec<PoolUsage>,
    /// Group → model → GPUs held.
    pub groups: BTreeMap<String, BTreeMap<String, u32>>,
    pub queue: Vec<QueuedKernel>,
    pub reclaiming: usize,
}
