//! The ops view of admission (pools, groups, the queue) and the checks of
//! its invariants that the property tests run after every step.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::state::Scheduler;
use super::types::{KernelId, Millis};

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

impl Scheduler {
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
}
