//! The scheduler's books: free devices per node, running allocations, each
//! group's and user's use, the queues; built from the inventory and the
//! quotas, with the lookups every decision starts from.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::types::{Grant, KernelId, Millis, Tuning};
use crate::inventory::Cluster;
use crate::quota::{Amount, DEFAULT_GROUP, GroupQuota, QuotaConfig, UserLimits};

#[derive(Debug, Clone)]
pub(super) struct Allocation {
    pub(super) user: String,
    pub(super) group: String,
    /// Pool index and node index, for GPU kernels.
    pub(super) place: Option<(usize, usize)>,
    pub(super) model: Option<String>,
    /// Device indexes on the node.
    pub(super) devices: Vec<u32>,
    pub(super) borrowed: u32,
    pub(super) since: Millis,
    pub(super) reclaiming: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) kernel: KernelId,
    pub(super) user: String,
    pub(super) gpus: u32,
    pub(super) seq: u64,
    pub(super) since: Millis,
}

#[derive(Debug, Default, Clone)]
pub(super) struct GroupState {
    pub(super) used: HashMap<String, u32>,
    /// Decayed GPU-milliseconds, as of `recent_at`.
    pub(super) recent: f64,
    pub(super) recent_at: Millis,
}

#[derive(Debug, Default, Clone)]
pub(super) struct UserState {
    /// Running and queued kernels.
    pub(super) kernels: u32,
    /// GPUs of running and queued kernels.
    pub(super) gpus: u32,
    /// GPU-ms of kernels that ended in the budget period starting at `period_start`.
    pub(super) closed_gpu_ms: f64,
    pub(super) period_start: Millis,
    pub(super) running: Vec<KernelId>,
}

/// The queue of one group for one model.
pub(super) type QueueKey = (String, String);

/// Admission and queue state. See the module docs.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub(super) cluster: Cluster,
    pub(super) quotas: QuotaConfig,
    pub(super) default_group: GroupQuota,
    pub(super) tuning: Tuning,
    /// pool → node → free device indexes.
    pub(super) free: Vec<Vec<Vec<u32>>>,
    pub(super) capacity: HashMap<String, u32>,
    pub(super) total_gpus: u32,
    pub(super) running: HashMap<KernelId, Allocation>,
    pub(super) groups: HashMap<String, GroupState>,
    pub(super) users: HashMap<String, UserState>,
    pub(super) queues: BTreeMap<QueueKey, VecDeque<Pending>>,
    pub(super) pending: HashMap<KernelId, QueueKey>,
    pub(super) seq: u64,
    /// Mean GPU holding time per model (exponential moving average, ms).
    pub(super) hold_ms: HashMap<String, f64>,
    /// GPUs being reclaimed per model, not yet free.
    pub(super) reclaiming: HashMap<String, u32>,
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

    pub(super) fn group_quota(&self, name: &str) -> &GroupQuota {
        self.quotas.group(name).unwrap_or(&self.default_group)
    }

    pub(super) fn group_name(&self, group: Option<&str>) -> String {
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

    pub(super) fn free_of(&self, model: &str) -> u32 {
        self.cluster
            .pools
            .iter()
            .zip(&self.free)
            .filter(|(p, _)| p.model == model)
            .map(|(_, nodes)| nodes.iter().map(|n| n.len() as u32).sum::<u32>())
            .sum()
    }

    /// What a kernel holds, as the gateway shows it.
    pub(super) fn grant_from(&self, a: &Allocation) -> Grant {
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
    pub(super) fn install(&mut self, kernel: KernelId, a: Allocation) {
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

    /// Whether `kernel` waits in a queue.
    pub fn is_queued(&self, kernel: KernelId) -> bool {
        self.pending.contains_key(&kernel)
    }

    pub fn queued(&self) -> usize {
        self.pending.len()
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

pub(super) fn decay(g: &mut GroupState, now: Millis, half_life: Millis) {
    let age = now.saturating_sub(g.recent_at) as f64;
    g.recent *= 0.5f64.powf(age / half_life.max(1) as f64);
    g.recent_at = now;
}
