//! Admission: scenarios, and property tests over random sequences of
//! requests, releases, cancels, quota edits and time.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use scheduler::admission::{Decision, Event, Limit, Request, Scheduler, Tuning};
use scheduler::inventory::Cluster;
use scheduler::quota::{Amount, GroupQuota, QuotaConfig, UserLimits};
use uuid::Uuid;

const HOUR: u64 = 3_600_000;

fn group(name: &str, model: &str, guaranteed: u32, borrow: Amount) -> GroupQuota {
    let mut g = GroupQuota::new(name);
    g.guaranteed.insert(model.into(), guaranteed);
    g.borrow_limit.insert(model.into(), borrow);
    g
}

fn req(user: &str, group: &str, gpus: u32) -> Request {
    Request {
        kernel: Uuid::new_v4(),
        user: user.into(),
        group: Some(group.into()),
        gpus,
        model: Some("H100-80GB".into()),
        role_max_gpus: Amount::Unlimited,
    }
}

fn admitted(events: &[Event]) -> Vec<Uuid> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Admitted { kernel, .. } => Some(*kernel),
            _ => None,
        })
        .collect()
}

/// The scenario: 4 GPUs, a group quota of 3, no borrowing, 100 starts.
#[test]
fn a_group_never_exceeds_its_quota_and_its_queue_is_fifo() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let quotas = QuotaConfig {
        groups: vec![group("cohort", "H100-80GB", 3, Amount::Finite(0))],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    let mut running = Vec::new();
    let mut queued = Vec::new();
    for i in 0..100 {
        let r = req(&format!("u{i}"), "cohort", 1);
        let id = r.kernel;
        match s.request(r, 1000).0 {
            Decision::Admitted(g) => {
                assert_eq!(g.devices.len(), 1);
                assert!(!g.real);
                running.push(id);
            }
            Decision::Queued(t) => {
                assert_eq!(t.position, queued.len() + 1, "positions are 1..N");
                assert!(
                    t.waiting_for.contains("holds 3 of its 3"),
                    "{}",
                    t.waiting_for
                );
                queued.push(id);
            }
            Decision::Refused(r) => panic!("refused: {r:?}"),
        }
        s.check_invariants();
    }
    assert_eq!(running.len(), 3);
    assert_eq!(s.group_usage("cohort", "H100-80GB"), 3);
    // Deleting running kernels admits queued ones in order.
    let mut next = 0;
    while let Some(k) = running.pop() {
        let events = s.release(k, 2000);
        let got = admitted(&events);
        if next < queued.len() {
            assert_eq!(got, vec![queued[next]]);
            running.insert(0, queued[next]);
            next += 1;
            if next < queued.len() {
                assert_eq!(s.ticket(queued[next], 2000).unwrap().position, 1);
            }
        } else {
            assert!(got.is_empty());
        }
        s.check_invariants();
    }
    assert_eq!(next, 97);
}

#[test]
fn refusals_name_the_limit_and_the_usage() {
    let cluster = Cluster::parse("2x2 H100-80GB").unwrap();
    let mut g = group("team", "H100-80GB", 2, Amount::Finite(0));
    g.user_limits = UserLimits {
        max_kernels: Some(Amount::Finite(2)),
        max_gpus: Some(Amount::Finite(2)),
        gpu_hours: Some(1.0),
        period: None,
    };
    let quotas = QuotaConfig {
        groups: vec![g],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    let t0 = 1_800_000_000_000; // 2027-01-15
    // Role cap.
    let mut r = req("ada", "team", 2);
    r.role_max_gpus = Amount::Finite(1);
    let Decision::Refused(f) = s.request(r, t0).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::RoleGpus);
    // More than a node has, more than the group may hold, an unknown model.
    let Decision::Refused(f) = s.request(req("ada", "team", 3), t0).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::Capacity);
    assert!(f.message.contains("most on one node is 2"), "{}", f.message);
    let mut r = req("ada", "team", 1);
    r.model = Some("A100".into());
    let Decision::Refused(f) = s.request(r, t0).0 else {
        panic!()
    };
    assert!(f.message.contains("no A100 GPU"), "{}", f.message);
    // Caps.
    let a = req("ada", "team", 1);
    let a_id = a.kernel;
    assert!(matches!(s.request(a, t0).0, Decision::Admitted(_)));
    let Decision::Refused(f) = s.request(req("ada", "team", 2), t0).0 else {
        panic!()
    };
    assert_eq!((f.limit, f.current, f.maximum), (Limit::UserGpus, 1.0, 2.0));
    assert!(matches!(
        s.request(req("ada", "team", 0), t0).0,
        Decision::Admitted(_)
    ));
    let Decision::Refused(f) = s.request(req("ada", "team", 0), t0).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::UserKernels);
    assert!(f.message.contains("shut one down"), "{}", f.message);
    // Budget: one GPU for 1.5 h exceeds 1 GPU-hour; the refusal says when it resets.
    s.release(a_id, t0 + 3 * HOUR / 2);
    let Decision::Refused(f) = s.request(req("ada", "team", 1), t0 + 2 * HOUR).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::GpuBudget);
    assert!(f.current >= 1.5 && f.maximum == 1.0);
    let resets = f.resets_at.unwrap();
    assert!(resets > t0 && resets <= t0 + 7 * 24 * HOUR, "{f:?}");
    assert!(f.message.contains("resets at"), "{}", f.message);
    // After the reset it is admitted again.
    assert!(matches!(
        s.request(req("ada", "team", 1), resets + 1).0,
        Decision::Admitted(_)
    ));
    s.check_invariants();
}

#[test]
fn borrowed_gpus_are_reclaimed_for_the_owner() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let quotas = QuotaConfig {
        groups: vec![
            group("class", "H100-80GB", 3, Amount::Finite(0)),
            group("research", "H100-80GB", 1, Amount::Finite(3)),
        ],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    // Research borrows the class's idle GPUs.
    let mut lent = Vec::new();
    for i in 0..4 {
        let r = req(&format!("r{i}"), "research", 1);
        lent.push(r.kernel);
        let Decision::Admitted(g) = s.request(r, 1000 + i).0 else {
            panic!()
        };
        assert_eq!(g.borrowed, u32::from(i > 0));
    }
    // The class needs its guarantee: the newest borrowed kernel is reclaimed.
    let c = req("c0", "class", 1);
    let c_id = c.kernel;
    let (d, events) = s.request(c, 5000);
    assert!(matches!(d, Decision::Queued(_)));
    let reclaimed: Vec<Uuid> = events
        .iter()
        .filter_map(|e| match e {
            Event::Reclaim {
                kernel,
                for_group,
                deadline,
            } => {
                assert_eq!(for_group, "class");
                assert_eq!(*deadline, 5000 + Tuning::default().reclaim_grace_ms);
                Some(*kernel)
            }
            _ => None,
        })
        .collect();
    assert_eq!(reclaimed, vec![lent[3]]);
    // A second class request reclaims another, not the same one again.
    let (_, events) = s.request(req("c1", "class", 1), 6000);
    assert!(matches!(&events[..], [Event::Reclaim { kernel, .. }] if *kernel == lent[2]));
    // A research request does not jump ahead when the GPU comes back.
    let (d, _) = s.request(req("r9", "research", 1), 6500);
    assert!(matches!(d, Decision::Queued(_)));
    let events = s.release(lent[3], 7000);
    assert_eq!(admitted(&events), vec![c_id]);
    s.check_invariants();
}

#[test]
fn fair_share_serves_the_lighter_group_first_and_the_starved_before_all() {
    let cluster = Cluster::parse("1x2 H100-80GB").unwrap();
    let unlimited = |n| group(n, "H100-80GB", 0, Amount::Unlimited);
    let quotas = QuotaConfig {
        groups: vec![unlimited("heavy"), unlimited("light")],
        users: vec![],
    };
    let tuning = Tuning {
        starvation_ms: HOUR,
        ..Tuning::default()
    };
    let mut s = Scheduler::new(cluster, quotas, tuning);
    let h1 = req("h1", "heavy", 1);
    let h1_id = h1.kernel;
    s.request(h1, 0);
    s.request(req("h2", "heavy", 1), 0);
    let h3 = req("h3", "heavy", 1);
    let h3_id = h3.kernel;
    s.request(h3, 10);
    let l1 = req("l1", "light", 1);
    let l1_id = l1.kernel;
    s.request(l1, 20);
    // light holds nothing, so it goes first although it came later.
    assert_eq!(s.order("H100-80GB", 30), vec![l1_id, h3_id]);
    assert_eq!(s.ticket(l1_id, 30).unwrap().position, 1);
    assert_eq!(admitted(&s.release(h1_id, 40)), vec![l1_id]);
    // A request waiting past the starvation limit goes before fairer ones.
    let l2 = req("l2", "light", 1);
    let l2_id = l2.kernel;
    s.request(l2, 50);
    assert_eq!(s.order("H100-80GB", 60)[0], l2_id);
    assert_eq!(s.order("H100-80GB", 10 + HOUR)[0], h3_id);
    s.check_invariants();
}

/// Dominant share is divided by the group's weight, and recent use counts
/// (decaying with its half-life): two groups holding the same GPUs are
/// served by weight, and of two equal groups the one that used less lately
/// goes first.
#[test]
fn weights_and_recent_use_order_the_queue() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let unlimited = |n: &str, weight: f64| {
        let mut g = group(n, "H100-80GB", 0, Amount::Unlimited);
        g.weight = weight;
        g
    };
    let quotas = QuotaConfig {
        groups: vec![
            unlimited("light-weight", 1.0),
            unlimited("heavy-weight", 3.0),
        ],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    // Each group holds 2 of the 4 GPUs; both queue one more.
    let mut held = Vec::new();
    for g in ["light-weight", "heavy-weight"] {
        for u in ["a", "b"] {
            let r = req(&format!("{g}-{u}"), g, 1);
            held.push(r.kernel);
            assert!(matches!(s.request(r, 0).0, Decision::Admitted(_)));
        }
    }
    let light = req("light-weight-c", "light-weight", 1);
    let light_id = light.kernel;
    s.request(light, 10);
    let heavy = req("heavy-weight-c", "heavy-weight", 1);
    let heavy_id = heavy.kernel;
    s.request(heavy, 20);
    // Same use, but weight 3 divides the share by 3: heavy-weight first,
    // although it asked later.
    assert_eq!(s.order("H100-80GB", 30), vec![heavy_id, light_id]);
    s.check_invariants();

    // Equal weights, equal current use: the group that used more lately waits.
    let cluster = Cluster::parse("1x2 H100-80GB").unwrap();
    let quotas = QuotaConfig {
        groups: vec![
            unlimited("busy", 1.0),
            unlimited("idle", 1.0),
            unlimited("other", 1.0),
        ],
        users: vec![],
    };
    let tuning = Tuning::default();
    let half_life = tuning.usage_half_life_ms;
    let mut s = Scheduler::new(cluster, quotas, tuning);
    // busy held both GPUs for a half-life, then let go.
    let b1 = req("b1", "busy", 1);
    let b2 = req("b2", "busy", 1);
    let (b1_id, b2_id) = (b1.kernel, b2.kernel);
    s.request(b1, 0);
    s.request(b2, 0);
    s.release(b1_id, half_life);
    s.release(b2_id, half_life);
    // Both GPUs are taken again, by nobody's group in question.
    let o1 = req("o1", "other", 1);
    let o2 = req("o2", "other", 1);
    let o1_id = o1.kernel;
    s.request(o1, half_life + 1);
    s.request(o2, half_life + 1);
    let busy = req("b3", "busy", 1);
    let busy_id = busy.kernel;
    s.request(busy, half_life + 2);
    let idle = req("i1", "idle", 1);
    let idle_id = idle.kernel;
    s.request(idle, half_life + 3);
    assert_eq!(s.order("H100-80GB", half_life + 4), vec![idle_id, busy_id]);
    assert_eq!(admitted(&s.release(o1_id, half_life + 5)), vec![idle_id]);
    s.check_invariants();
}

#[test]
fn a_big_request_is_not_starved_by_small_ones() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let mut s = Scheduler::new(cluster, QuotaConfig::default(), Tuning::default());
    let mut held = Vec::new();
    for i in 0..4 {
        let r = req(&format!("s{i}"), "none", 1);
        held.push(r.kernel);
        s.request(r, i);
    }
    let big = req("big", "none", 4);
    let big_id = big.kernel;
    assert!(matches!(s.request(big, 10).0, Decision::Queued(_)));
    // Small requests arriving later wait behind it even when one GPU is free.
    let small = req("late", "none", 1);
    s.release(held.pop().unwrap(), 20);
    assert!(matches!(s.request(small, 21).0, Decision::Queued(_)));
    let mut got = Vec::new();
    for k in held {
        got.extend(admitted(&s.release(k, 30)));
    }
    assert_eq!(got, vec![big_id]);
    s.check_invariants();
}

#[test]
fn cpu_kernels_count_against_kernel_caps_only() {
    let mut s = Scheduler::new(
        Cluster::default(),
        QuotaConfig::default(),
        Tuning::default(),
    );
    let Decision::Admitted(g) = s.request(req("ada", "x", 0), 0).0 else {
        panic!()
    };
    assert!(g.devices.is_empty() && g.model.is_none());
    let mut r = req("ada", "x", 1);
    r.model = None;
    let Decision::Refused(f) = s.request(r, 0).0 else {
        panic!()
    };
    assert!(f.message.contains("no GPUs"), "{}", f.message);
    s.check_invariants();
}

#[test]
fn a_restarted_gateway_restores_allocations() {
    let cluster = Cluster::parse("2x2 H100-80GB").unwrap();
    let mut s = Scheduler::new(cluster.clone(), QuotaConfig::default(), Tuning::default());
    let r = req("ada", "x", 2);
    let id = r.kernel;
    let Decision::Admitted(g) = s.request(r, 0).0 else {
        panic!()
    };
    let mut fresh = Scheduler::new(cluster, QuotaConfig::default(), Tuning::default());
    assert!(fresh.restore(id, "ada", None, &g, 0));
    assert_eq!(fresh.grant_of(id).unwrap(), g);
    fresh.check_invariants();
    // The same devices cannot be restored twice.
    assert!(!fresh.restore(Uuid::new_v4(), "bob", None, &g, 0));
    fresh.check_invariants();
}

// ---------------------------------------------------------------------------
// Properties.

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
