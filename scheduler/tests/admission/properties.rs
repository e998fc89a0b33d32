//! Property tests: random sequences of requests, releases, cancels, quota
//! edits and time never break admission's invariants, checked against a
//! simple model.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use scheduler::admission::{Decision, Event, Request, Scheduler, Tuning};
use scheduler::inventory::Cluster;
use scheduler::quota::{Amount, GroupQuota, QuotaConfig, UserLimits};
use uuid::Uuid;

use crate::helpers::*;

#[derive(Debug, Clone)]
enum Op {
    Request {
        user: u8,
        group: Option<u8>,
        gpus: u32,
        model: Option<u8>,
    },
    Release(usize),
    Cancel(usize),
    Edit(GroupQuota),
    Advance(u64),
}

const MODELS: [&str; 2] = ["H100-80GB", "1g.10gb"];

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![(0u32..5).prop_map(Amount::Finite), Just(Amount::Unlimited)]
}

fn group_quota(i: u8) -> impl Strategy<Value = GroupQuota> {
    (
        1u32..4,
        prop::collection::btree_map(0usize..2, 0u32..4, 0..2),
        prop::collection::btree_map(0usize..2, amount(), 0..2),
        prop::option::of(1u32..5),
        prop::option::of(1u32..6),
    )
        .prop_map(move |(w, g, b, k, gp)| GroupQuota {
            name: format!("g{i}"),
            weight: f64::from(w),
            guaranteed: g
                .into_iter()
                .map(|(m, n)| (MODELS[m].to_owned(), n))
                .collect(),
            borrow_limit: b
                .into_iter()
                .map(|(m, n)| (MODELS[m].to_owned(), n))
                .collect(),
            user_limits: UserLimits {
                max_kernels: k.map(Amount::Finite),
                max_gpus: gp.map(Amount::Finite),
                gpu_hours: None,
                period: None,
            },
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, prop::option::of(0u8..4), 0u32..4, prop::option::of(0u8..2))
            .prop_map(|(user, group, gpus, model)| Op::Request { user, group, gpus, model }),
        3 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (0u8..4).prop_flat_map(|i| group_quota(i).prop_map(Op::Edit)),
        1 => (0u64..4 * HOUR).prop_map(Op::Advance),
    ]
}

struct Model {
    s: Scheduler,
    now: u64,
    running: Vec<Uuid>,
    queued: Vec<Uuid>,
    /// kernel → (group, model) of GPU kernels, to check ceilings at admission.
    placed: HashMap<Uuid, (String, Option<String>)>,
    requested: HashMap<Uuid, Request>,
    /// The group whose queue a request joined: its own if it existed at
    /// request time, else the default group (a later edit creating the
    /// group does not move it).
    queued_in: HashMap<Uuid, String>,
}

impl Model {
    fn group_of(&self, r: &Request) -> String {
        match &r.group {
            Some(g) if self.s.quotas().group(g).is_some() => g.clone(),
            _ => "default".into(),
        }
    }

    fn apply(&mut self, events: Vec<Event>) {
        let mut touched = HashSet::new();
        for e in events {
            match e {
                Event::Admitted { kernel, grant } => {
                    assert!(
                        self.queued.contains(&kernel),
                        "admitted a kernel that was not queued"
                    );
                    self.queued.retain(|k| *k != kernel);
                    self.running.push(kernel);
                    let r = &self.requested[&kernel];
                    assert_eq!(grant.devices.len() as u32, r.gpus);
                    let g = self.queued_in[&kernel].clone();
                    touched.insert((g.clone(), grant.model.clone()));
                    self.placed.insert(kernel, (g, grant.model));
                }
                Event::Reclaim { kernel, .. } => {
                    assert!(
                        self.running.contains(&kernel),
                        "reclaimed a kernel that is not running"
                    );
                }
                Event::Refused { kernel, .. } => {
                    assert!(self.queued.contains(&kernel));
                    self.queued.retain(|k| *k != kernel);
                }
            }
        }
        self.check_ceilings(touched);
    }

    /// A group that was just given GPUs is within its ceiling.
    fn check_ceilings(&self, touched: HashSet<(String, Option<String>)>) {
        for (g, m) in touched {
            let Some(m) = m else { continue };
            let quota = self
                .s
                .quotas()
                .group(&g)
                .cloned()
                .unwrap_or_else(GroupQuota::default_group);
            let used = self.s.group_usage(&g, &m);
            assert!(
                quota.ceiling(&m).allows(u64::from(used)),
                "group {g} holds {used} {m}, over its ceiling {}",
                quota.ceiling(&m)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_and_every_queue_drains(
        spec in prop::collection::vec((1usize..3, 1usize..5, 0usize..2), 1..3),
        initial in prop::collection::vec((0u8..4).prop_flat_map(group_quota), 0..4),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let text: Vec<String> = spec.iter().map(|(n, g, m)| format!("{n}x{g} {}", MODELS[*m])).collect();
        let cluster = Cluster::parse(&text.join(";")).unwrap();
        let mut quotas = QuotaConfig::default();
        for g in initial { quotas.put_group(g); }
        let tuning = Tuning { starvation_ms: HOUR, reclaim_grace_ms: 60_000, ..Tuning::default() };
        let mut m = Model {
            s: Scheduler::new(cluster, quotas, tuning),
            now: 1_700_000_000_000,
            running: vec![], queued: vec![], placed: HashMap::new(), requested: HashMap::new(),
            queued_in: HashMap::new(),
        };
        for op in ops {
            match op {
                Op::Request { user, group, gpus, model } => {
                    let r = Request {
                        kernel: Uuid::new_v4(),
                        user: format!("u{user}"),
                        group: group.map(|g| format!("g{g}")),
                        gpus,
                        model: model.map(|i| MODELS[i as usize].to_owned()),
                        role_max_gpus: Amount::Unlimited,
                    };
                    let id = r.kernel;
                    m.requested.insert(id, r.clone());
                    let joined = m.group_of(&r);
                    m.queued_in.insert(id, joined);
                    m.queued.push(id);
                    let (d, events) = m.s.request(r.clone(), m.now);
                    match d {
                        Decision::Admitted(g) => {
                            m.queued.retain(|k| *k != id);
                            m.running.push(id);
                            prop_assert_eq!(g.devices.len() as u32, gpus);
                            let grp = m.group_of(&r);
                            let mut t = HashSet::new();
                            t.insert((grp.clone(), g.model.clone()));
                            m.placed.insert(id, (grp, g.model));
                            m.check_ceilings(t);
                        }
                        Decision::Queued(t) => {
                            prop_assert!(t.position >= 1 && t.position <= m.s.queued());
                        }
                        Decision::Refused(_) => { m.queued.retain(|k| *k != id); }
                    }
                    // Caps hold for an accepted request.
                    if m.running.contains(&id) || m.queued.contains(&id) {
                        let grp = m.group_of(&r);
                        let limits = m.s.user_limits(&r.user, &grp);
                        let mine: Vec<&Uuid> = m.running.iter().chain(&m.queued)
                            .filter(|k| m.requested[*k].user == r.user).collect();
                        if let Some(max) = limits.max_kernels {
                            prop_assert!(max.allows(mine.len() as u64));
                        }
                        if let (Some(max), true) = (limits.max_gpus, gpus > 0) {
                            let g: u64 = mine.iter().map(|k| u64::from(m.requested[*k].gpus)).sum();
                            prop_assert!(max.allows(g));
                        }
                    }
                    m.apply(events);
                }
                Op::Release(i) if !m.running.is_empty() => {
                    let k = m.running.remove(i % m.running.len());
                    let events = m.s.release(k, m.now);
                    m.apply(events);
                }
                Op::Cancel(i) if !m.queued.is_empty() => {
                    let k = m.queued.remove(i % m.queued.len());
                    let events = m.s.release(k, m.now);
                    m.apply(events);
                }
                Op::Edit(g) => {
                    let mut q = m.s.quotas().clone();
                    q.put_group(g);
                    let events = m.s.set_quotas(q, m.now);
                    m.apply(events);
                }
                Op::Advance(ms) => {
                    m.now += ms;
                    let events = m.s.dispatch(m.now);
                    m.apply(events);
                }
                _ => {}
            }
            m.s.check_invariants();
            prop_assert_eq!(m.s.queued(), m.queued.len());
            prop_assert_eq!(m.s.running(), m.running.len());
            // Positions are a permutation 1..N per model.
            let snap = m.s.snapshot(m.now);
            let mut by_model: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for q in &snap.queue { by_model.entry(q.model.clone()).or_default().push(q.position); }
            for (_, mut p) in by_model { p.sort(); prop_assert_eq!(p.clone(), (1..=p.len()).collect::<Vec<_>>()); }
        }
        // Bounded waiting: once arrivals stop, releasing what runs admits every
        // queued request, whatever the fair order was.
        let mut rounds = 0;
        while !m.queued.is_empty() {
            rounds += 1;
            prop_assert!(rounds < 10_000, "queue did not drain: {:?}", m.s.snapshot(m.now).queue);
            prop_assert!(!m.running.is_empty(), "requests wait with nothing running: {:?}", m.s.snapshot(m.now).queue);
            m.now += 1000;
            let k = m.running.remove(0);
            let events = m.s.release(k, m.now);
            m.apply(events);
            m.s.check_invariants();
        }
    }
}
